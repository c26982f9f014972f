//! A tenant's own WhatsApp number (`/v1/whatsapp/number`, migration V7) over real PostgreSQL,
//! and end to end with the ingest, the processor, the notifier and the sandbox: registration,
//! update and detachment by an owner; 409 for the shared number and another tenant's; 403 for
//! other roles; bad input changes nothing; the token is never shown and never stored in the
//! clear; tenants cannot see or change each other's numbers; a customer's message to the own
//! number is answered from it with THAT tenant's token (the sandbox accepts only it); a number
//! without a token is never sent with the platform token; a BSUID-only sender is skipped.

use crate::helpers::{
    admin_client, count, dbname, phone, processed_everything, replies_to, test_vault, wa_id,
    wait_for, Chat, Owner, TestApp, SHARED_PHONE_NUMBER_ID, WAIT,
};
use ledger_core::TenantId;
use loyalty::conversations::register_own_number;
use serde_json::{json, Value};

const OWN: &str = "200000000000101";
const TOKEN_A: &str = "EAAtenantA-token-0001";

fn number_body(id: &str, token: &str) -> Value {
    json!({
        "phone_number_id": id,
        "display_phone_number": "+234 801 000 0101",
        "access_token": token,
    })
}

/// `method` on `/v1/whatsapp/number` as `bearer`, with `body` as JSON when given.
async fn number_call(
    app: &TestApp,
    method: reqwest::Method,
    bearer: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(method, app.url("/v1/whatsapp/number"))
        .bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

async fn put(app: &TestApp, bearer: &str, body: &Value) -> reqwest::Response {
    number_call(app, reqwest::Method::PUT, bearer, Some(body)).await
}

async fn get(app: &TestApp, bearer: &str) -> reqwest::Response {
    number_call(app, reqwest::Method::GET, bearer, None).await
}

async fn delete(app: &TestApp, bearer: &str) -> reqwest::Response {
    number_call(app, reqwest::Method::DELETE, bearer, None).await
}

/// A new tenant's owner, with `OWN` registered as the tenant's number (token `TOKEN_A`).
async fn owner_with_own_number(app: &TestApp) -> Owner<'_> {
    let owner = Owner::sign_up(app).await;
    let created = put(app, &owner.token, &number_body(OWN, TOKEN_A)).await;
    assert_eq!(created.status(), 201);
    owner
}

/// Every row of `whatsapp_numbers` and `whatsapp_number_changes`, as the owner sees them.
async fn snapshot(app: &TestApp) -> (Vec<String>, i64) {
    let db = admin_client(&dbname(&app.database_url)).await;
    let numbers = db
        .query(
            "SELECT phone_number_id || '|' || coalesce(tenant_id::text, '-') || '|' || \
                    display_phone_number || '|' || fallback_template || '|' || template_language \
                    || '|' || coalesce(encode(sealed_access_token, 'hex'), '-') \
               FROM whatsapp_numbers ORDER BY phone_number_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let changes = count(app, "SELECT count(*) FROM whatsapp_number_changes").await;
    (numbers, changes)
}

/// The tenant's token as the notifier would open it.
async fn stored_token(app: &TestApp, id: &str) -> Option<String> {
    let db = admin_client(&dbname(&app.database_url)).await;
    let row = db
        .query_opt(
            "SELECT tenant_id, master_key_id, wrapped_key, sealed_access_token \
               FROM whatsapp_numbers WHERE phone_number_id = $1",
            &[&id],
        )
        .await
        .unwrap()?;
    let tenant: uuid::Uuid = row.get(0);
    let record = vault::SealedRecord {
        master_key_id: row.get::<_, Option<String>>(1)?,
        wrapped_key: row.get::<_, Option<Vec<u8>>>(2)?,
        sealed: row.get::<_, Option<Vec<u8>>>(3)?,
    };
    let context = schema::whatsapp_numbers::token_seal_context(id, TenantId::from_uuid(tenant));
    let plain = test_vault().open_record(&context, &record).unwrap();
    Some(String::from_utf8(plain).unwrap())
}

async fn shared_number_seeded(app: &TestApp) {
    wait_for(WAIT, "the shared number", || async {
        count(
            app,
            "SELECT count(*) FROM whatsapp_numbers WHERE tenant_id IS NULL",
        )
        .await
            == 1
    })
    .await;
}

#[tokio::test]
async fn an_owner_registers_updates_shows_and_detaches_the_number_and_the_token_never_shows() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    assert_eq!(get(&app, &owner.token).await.status(), 404);

    let created = put(&app, &owner.token, &number_body(OWN, TOKEN_A)).await;
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(!text.contains(TOKEN_A), "the token is echoed: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["phone_number_id"], OWN);
    assert_eq!(body["display_phone_number"], "2348010000101");
    assert_eq!(body["fallback_template"], "loyalty_update");
    assert_eq!(body["template_language"], "en");
    assert_eq!(body["access_token_set"], true);
    assert!(body.get("access_token").is_none());

    let shown = get(&app, &owner.token).await;
    assert_eq!(shown.status(), 200);
    let shown_text = shown.text().await.unwrap();
    assert!(
        !shown_text.contains(TOKEN_A),
        "GET leaks the token: {shown_text}"
    );
    assert_eq!(serde_json::from_str::<Value>(&shown_text).unwrap(), body);

    // Sealed at rest: not in the table in any spelling, and it opens to the token.
    let db = admin_client(&dbname(&app.database_url)).await;
    let raw: Vec<u8> = db
        .query_one(
            "SELECT convert_to(t::text, 'UTF8') FROM whatsapp_numbers t WHERE phone_number_id = $1",
            &[&OWN],
        )
        .await
        .unwrap()
        .get(0);
    let hex_token: String = TOKEN_A.bytes().map(|b| format!("{b:02x}")).collect();
    let raw_text = String::from_utf8_lossy(&raw);
    assert!(!raw_text.contains(TOKEN_A) && !raw_text.contains(&hex_token));
    assert_eq!(stored_token(&app, OWN).await.as_deref(), Some(TOKEN_A));

    // The route into the processor: messages to the number are this tenant's.
    let routed: Option<uuid::Uuid> = db
        .query_one(
            "SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1",
            &[&OWN],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(routed, Some(owner.tenant.as_uuid()));

    // Rotation: a PUT with a new token is 200 and the new token is the one stored.
    let mut rotated = number_body(OWN, "EAAtenantA-token-0002");
    rotated["fallback_template"] = json!("points_news");
    rotated["template_language"] = json!("en_GB");
    let updated = put(&app, &owner.token, &rotated).await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["fallback_template"], "points_news");
    assert_eq!(updated["template_language"], "en_GB");
    assert_eq!(updated["created_at"], body["created_at"]);
    assert_eq!(
        stored_token(&app, OWN).await.as_deref(),
        Some("EAAtenantA-token-0002")
    );

    let detached = delete(&app, &owner.token).await;
    assert_eq!(detached.status(), 200);
    let detached: Value = detached.json().await.unwrap();
    assert_eq!(
        detached,
        json!({"phone_number_id": OWN, "queued_messages_failed": 0})
    );
    assert_eq!(get(&app, &owner.token).await.status(), 404);
    assert_eq!(delete(&app, &owner.token).await.status(), 404);
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM whatsapp_numbers WHERE phone_number_id = '{OWN}'")
        )
        .await,
        0,
        "the row and its sealed token are gone"
    );
    let actions: Vec<String> = db
        .query(
            "SELECT action || ':' || actor_kind || ':' || (actor_id IS NOT NULL)::text \
               FROM whatsapp_number_changes WHERE tenant_id = $1 ORDER BY change_id",
            &[&owner.tenant.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "registered:user:true",
            "updated:user:true",
            "detached:user:true"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_shared_number_and_another_tenants_number_are_409_and_change_nothing() {
    let app = TestApp::spawn().await;
    shared_number_seeded(&app).await;
    let a = owner_with_own_number(&app).await;
    let b = Owner::sign_up(&app).await;
    let before = snapshot(&app).await;

    for id in [OWN, SHARED_PHONE_NUMBER_ID] {
        let refused = put(&app, &b.token, &number_body(id, "EAAtenantB-token")).await;
        assert_eq!(refused.status(), 409, "{id}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://loyalty-ledger.dev/problems/whatsapp-number-taken"
        );
        assert_eq!(problem["field"], "phone_number_id");
    }
    // The owner of the number cannot take the shared number either.
    assert_eq!(
        put(
            &app,
            &a.token,
            &number_body(SHARED_PHONE_NUMBER_ID, TOKEN_A)
        )
        .await
        .status(),
        409
    );
    assert_eq!(snapshot(&app).await, before, "a refusal changed something");
    assert_eq!(stored_token(&app, OWN).await.as_deref(), Some(TOKEN_A));

    // Tenant B cannot see, change or detach A's number; its own view is empty.
    assert_eq!(get(&app, &b.token).await.status(), 404);
    assert_eq!(delete(&app, &b.token).await.status(), 404);
    assert_eq!(snapshot(&app).await, before);
    assert_eq!(get(&app, &a.token).await.status(), 200);
    app.stop().await;
}

/// The API knows the shared number from its settings: refused before the processor seeds it.
#[tokio::test]
async fn the_shared_number_is_refused_before_the_processor_has_seeded_it() {
    let app = TestApp::spawn_with(loyalty::app::Components {
        api: true,
        ..loyalty::app::Components::NONE
    })
    .await;
    let owner = Owner::sign_up(&app).await;
    let refused = put(
        &app,
        &owner.token,
        &number_body(SHARED_PHONE_NUMBER_ID, TOKEN_A),
    )
    .await;
    assert_eq!(refused.status(), 409);
    assert_eq!(snapshot(&app).await, (Vec::new(), 0));
    app.stop().await;
}

#[tokio::test]
async fn only_owners_manage_the_number() {
    let app = TestApp::spawn().await;
    let owner = owner_with_own_number(&app).await;
    let auditor_key: Value = owner
        .post(
            "/v1/api-keys",
            None,
            json!({"label": "auditor", "role": "auditor"}),
        )
        .await;
    let before = snapshot(&app).await;
    // The app's staff key belongs to another tenant; an auditor key to this one.
    for key in [
        app.api_key.clone(),
        auditor_key["api_key"].as_str().unwrap().to_owned(),
    ] {
        for response in [
            put(&app, &key, &number_body("200000000000999", "EAAother")).await,
            get(&app, &key).await,
            delete(&app, &key).await,
        ] {
            assert_eq!(response.status(), 403);
            let problem: Value = response.json().await.unwrap();
            assert_eq!(
                problem["type"],
                "https://loyalty-ledger.dev/problems/forbidden"
            );
        }
    }
    assert_eq!(snapshot(&app).await, before);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_4xx_problem_naming_the_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let owner = owner_with_own_number(&app).await;
    let before = snapshot(&app).await;
    let mut cases: Vec<(Value, &str)> = vec![
        (
            json!({"display_phone_number": "+2348010000101", "access_token": "x"}),
            "phone_number_id",
        ),
        (number_body("12a45678", "x"), "phone_number_id"),
        (number_body("1234", "x"), "phone_number_id"),
        (number_body(&"1".repeat(33), "x"), "phone_number_id"),
        (
            json!({"phone_number_id": 200000000000101u64, "display_phone_number": "+2348010000101", "access_token": "x"}),
            "phone_number_id",
        ),
        (number_body(OWN, ""), "access_token"),
        (number_body(OWN, "   "), "access_token"),
        (number_body(OWN, "two words"), "access_token"),
        (number_body(OWN, &"t".repeat(2049)), "access_token"),
        (
            json!({"phone_number_id": OWN, "display_phone_number": "+2348010000101"}),
            "access_token",
        ),
        (
            json!({"phone_number_id": OWN, "display_phone_number": "12", "access_token": "x"}),
            "display_phone_number",
        ),
        (
            json!({"phone_number_id": OWN, "display_phone_number": "call me", "access_token": "x"}),
            "display_phone_number",
        ),
    ];
    let mut with = |field: &str, value: Value, at: &'static str| {
        let mut body = number_body(OWN, "EAAnew");
        body[field] = value;
        cases.push((body, at));
    };
    with(
        "fallback_template",
        json!("Hello World"),
        "fallback_template",
    );
    with("template_language", json!("english"), "template_language");
    with("access_token", json!(42), "access_token");
    with("secret", json!("x"), "secret");
    for (body, field) in cases {
        let response = put(&app, &owner.token, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"], field, "{body}: {problem}");
        assert!(!problem.to_string().contains("two words"), "{problem}");
    }
    // Not JSON, not an object, the wrong content type, too large.
    let raw = |bytes: Vec<u8>, content_type: &'static str| {
        app.http
            .put(app.url("/v1/whatsapp/number"))
            .bearer_auth(&owner.token)
            .header("Content-Type", content_type)
            .body(bytes)
            .send()
    };
    assert_eq!(
        raw(b"{\"phone_number_id\":".to_vec(), "application/json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        raw(b"[1,2]".to_vec(), "application/json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        raw(b"{}".to_vec(), "text/plain").await.unwrap().status(),
        415
    );
    assert_eq!(
        raw(vec![b' '; 100_000], "application/json")
            .await
            .unwrap()
            .status(),
        413
    );
    assert_eq!(snapshot(&app).await, before, "bad input changed something");
    assert_eq!(stored_token(&app, OWN).await.as_deref(), Some(TOKEN_A));
    app.stop().await;
}

/// The API role reaches the table only through the definer functions, and those only for the
/// transaction's one tenant.
#[tokio::test]
async fn the_app_role_cannot_read_numbers_directly_nor_without_a_tenant() {
    let app = TestApp::spawn().await;
    owner_with_own_number(&app).await;
    let client = app.db().await;
    let direct = client
        .query("SELECT sealed_access_token FROM whatsapp_numbers", &[])
        .await;
    assert!(
        direct.is_err(),
        "loyalty_app reads whatsapp_numbers directly"
    );
    let unscoped = client
        .query("SELECT * FROM tenancy.whatsapp_number_get()", &[])
        .await;
    assert!(
        unscoped.is_err(),
        "a definer function ran with no tenant in scope"
    );
    let rows = client
        .query(
            "SELECT * FROM tenancy.whatsapp_number_detach('user', NULL, NULL)",
            &[],
        )
        .await;
    assert!(rows.is_err());
    assert_eq!(stored_token(&app, OWN).await.as_deref(), Some(TOKEN_A));
    app.stop().await;
}

/// End to end: the number registered through the API, a customer's message to it routed to
/// the tenant, the reply sent from it with the tenant's token (the sandbox accepts only that
/// token for this number: the platform token would be refused with 190); a number of another
/// tenant registered without a token gets its reply queued but never sent, not even with the
/// platform token (which the sandbox would accept for it).
#[tokio::test]
async fn replies_on_an_own_number_go_out_with_that_tenants_token_and_a_number_without_one_sends_nothing(
) {
    let untokened = "200000000000202";
    let app = TestApp::spawn_whatsapp_with_numbers(&format!(
        "{OWN}:2348010000101:{TOKEN_A},{untokened}:2348010000202"
    ))
    .await;
    let a = owner_with_own_number(&app).await;
    let b = Owner::sign_up(&app).await;
    assert!(
        register_own_number(&app.platform_pool, b.tenant, untokened, "2348010000202")
            .await
            .unwrap()
    );

    let ada = phone();
    let chat = Chat::on(&app, OWN);
    chat.say(&ada, "hi").await;
    let sends = sandbox_sends(&app, &wa_id(&ada), 1).await;
    assert_eq!(sends[0]["phone_number_id"], OWN);
    assert_eq!(sends[0]["outcome"], "accepted", "{:?}", sends[0]);
    let replies = replies_to(&app, &ada).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].tenant, Some(a.tenant.as_uuid()));

    let bola = phone();
    Chat::on(&app, untokened).say(&bola, "hi").await;
    wait_for(WAIT, "the reply on the untokened number to fail", || async {
        count(
            &app,
            &format!(
                "SELECT count(*) FROM whatsapp_outbox o JOIN whatsapp_outbox_log l USING (message_id) \
                  WHERE o.phone_number_id = '{untokened}' AND o.state = 'failed' \
                    AND l.outcome = 'failed' AND l.detail LIKE 'no usable access token%'"
            ),
        )
        .await
            == 1
    })
    .await;
    let all = all_sandbox_sends(&app).await;
    assert!(
        all.iter().all(|s| s["phone_number_id"] != untokened),
        "something was sent from the number without a token: {all:?}"
    );
    // A token rotated by PUT is used from the next message on: rotated to one the sandbox
    // (Meta) does not accept for this number, the next reply is refused with 190 and failed;
    // rotated back, the one after is accepted.
    assert_eq!(
        put(&app, &a.token, &number_body(OWN, "EAAtenantA-revoked"))
            .await
            .status(),
        200
    );
    chat.say(&ada, "points").await;
    wait_for(
        WAIT,
        "the reply with the revoked token to fail with 190",
        || async {
            count(
                &app,
                &format!(
                    "SELECT count(*) FROM whatsapp_outbox \
                  WHERE phone_number_id = '{OWN}' AND state = 'failed' AND last_error_code = 190"
                ),
            )
            .await
                == 1
        },
    )
    .await;
    assert_eq!(
        put(&app, &a.token, &number_body(OWN, TOKEN_A))
            .await
            .status(),
        200
    );
    chat.say(&ada, "points").await;
    let sends = sandbox_sends(&app, &wa_id(&ada), 3).await;
    assert_eq!(sends[1]["outcome"], "refused", "{:?}", sends[1]);
    assert_eq!(sends[2]["outcome"], "accepted", "{:?}", sends[2]);
    processed_everything(&app).await;
    app.stop().await;
}

async fn all_sandbox_sends(app: &TestApp) -> Vec<Value> {
    let body: Value = app
        .http
        .get(format!("{}/sandbox/messages", app.sandbox_address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["messages"].as_array().cloned().unwrap_or_default()
}

async fn sandbox_sends(app: &TestApp, to: &str, count: usize) -> Vec<Value> {
    wait_for(WAIT, &format!("{count} sends to the customer"), || async {
        all_sandbox_sends(app)
            .await
            .iter()
            .filter(|s| s["recipient"] == to)
            .count()
            >= count
    })
    .await;
    all_sandbox_sends(app)
        .await
        .into_iter()
        .filter(|s| s["recipient"] == to)
        .collect()
}

/// A message whose sender is only a business-scoped user id (no `from`): stored, passed by
/// the processor with no reply and no member, and the next ordinary message is answered.
#[tokio::test]
async fn a_message_from_a_user_id_without_a_phone_number_is_kept_and_not_answered() {
    let app = TestApp::spawn().await;
    shared_number_seeded(&app).await;
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "100000000000000", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001234", "phone_number_id": SHARED_PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Ada", "username": "@ada"}, "user_id": "NG.13491208655302741918"}],
            "messages": [{"from_user_id": "NG.13491208655302741918", "id": "wamid.BSUIDONLY1",
                          "timestamp": "1767225600", "type": "text", "text": {"body": "JOIN SHOP"}}]
        }}]}]
    });
    app.post_webhook(&body).await;
    processed_everything(&app).await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM whatsapp_inbox WHERE kind = 'message'"
        )
        .await,
        1
    );
    assert_eq!(count(&app, "SELECT count(*) FROM whatsapp_outbox").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM whatsapp_members").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM whatsapp_conversations").await,
        0
    );

    // Nothing is stuck behind it.
    let ada = phone();
    Chat::shared(&app).say(&ada, "hi").await;
    let reply = Chat::shared(&app).reply(&ada, 1).await;
    assert!(!reply.text().is_empty());
    app.stop().await;
}

/// Queues a message on `number` as the processor would (the recipient's bytes do not matter
/// here: it is never sent).
async fn queue_on(app: &TestApp, number: &str) -> uuid::Uuid {
    let message_id = uuid::Uuid::now_v7();
    app.platform_db()
        .await
        .execute(
            "INSERT INTO whatsapp_outbox (message_id, dedupe_key, phone_number_id, customer_digest, \
               master_key_id, wrapped_key, sealed_recipient, kind, body, next_attempt_at) \
             VALUES ($1, $2, $3, $4, 'x', '\\x00', '\\x00', 'reply', '{}'::jsonb, \
                     now() + interval '1 hour')",
            &[&message_id, &format!("test:{message_id}"), &number, &vec![7u8; 32]],
        )
        .await
        .unwrap();
    message_id
}

async fn outbox_state(app: &TestApp, message_id: uuid::Uuid) -> (String, Vec<String>) {
    let db = app.platform_db().await;
    let state: String = db
        .query_one(
            "SELECT state FROM whatsapp_outbox WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .unwrap()
        .get(0);
    let log = db
        .query(
            "SELECT outcome || ': ' || coalesce(detail, '') FROM whatsapp_outbox_log \
              WHERE message_id = $1 ORDER BY log_id",
            &[&message_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (state, log)
}

/// Replacing the number by another, or detaching it, fails the old number's queued messages
/// (they must not go out from a number that is no longer the tenant's) and leaves other
/// numbers' messages alone.
#[tokio::test]
async fn replacing_or_detaching_the_number_fails_its_queued_messages_only() {
    let app = TestApp::spawn().await;
    let owner = owner_with_own_number(&app).await;
    let second = "200000000000102";
    let on_first = queue_on(&app, OWN).await;
    let elsewhere = queue_on(&app, "200000000000999").await;

    let replaced = put(&app, &owner.token, &number_body(second, TOKEN_A)).await;
    assert_eq!(replaced.status(), 201, "a new number is a new registration");
    let shown: Value = get(&app, &owner.token).await.json().await.unwrap();
    assert_eq!(shown["phone_number_id"], second);
    assert_eq!(
        outbox_state(&app, on_first).await,
        (
            "failed".to_owned(),
            vec!["failed: the number was replaced by another of its tenant".to_owned()]
        )
    );

    let on_second = queue_on(&app, second).await;
    let detached: Value = delete(&app, &owner.token).await.json().await.unwrap();
    assert_eq!(
        detached,
        json!({"phone_number_id": second, "queued_messages_failed": 1})
    );
    assert_eq!(
        outbox_state(&app, on_second).await,
        (
            "failed".to_owned(),
            vec!["failed: the number was detached from its tenant".to_owned()]
        )
    );
    assert_eq!(
        outbox_state(&app, elsewhere).await,
        ("queued".to_owned(), vec![])
    );
    // The first number is free again for this tenant.
    assert_eq!(
        put(&app, &owner.token, &number_body(OWN, TOKEN_A))
            .await
            .status(),
        201
    );
    app.stop().await;
}

/// Concurrent PUTs of different numbers by one tenant: each answers 201 or 200 (never a 5xx
/// from the one-number-per-tenant index), and one number is left.
#[tokio::test]
async fn concurrent_puts_of_one_tenant_leave_one_number_and_no_error() {
    let app = TestApp::spawn().await;
    let owner = Owner::sign_up(&app).await;
    let ids: Vec<String> = (0..6).map(|i| format!("20000000000050{i}")).collect();
    let bodies: Vec<Value> = ids.iter().map(|id| number_body(id, TOKEN_A)).collect();
    let puts = bodies.iter().map(|body| put(&app, &owner.token, body));
    for response in futures_util::future::join_all(puts).await {
        assert!(
            response.status() == 201 || response.status() == 200,
            "{}",
            response.status()
        );
    }
    let (numbers, _) = snapshot(&app).await;
    let own: Vec<&String> = numbers
        .iter()
        .filter(|n| n.contains(&owner.tenant.as_uuid().to_string()))
        .collect();
    assert_eq!(own.len(), 1, "{numbers:?}");
    app.stop().await;
}
