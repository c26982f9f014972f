//! Rotating the personal-data keys: re-wrapping data keys under a new master key and
//! recomputing phone indexes under a new blind-index key, over a real database.

use crate::helpers::{
    admin_client, count, dbname, key_env, phone, processed_everything, vendor_code, wa_id,
    wait_for, Chat, TestApp, TEST_KEYS, WAIT,
};
use ledger_core::command::WrappedDataKey;
use ledger_core::{CustomerId, Event, PhoneNumber, StreamId, TenantId};
use loyalty::conversations::{conversation_seal_context, outbox_seal_context};
use loyalty::keys::SEALED_TABLES;
use std::collections::BTreeMap;
use uuid::Uuid;
use vault::{SealedRecord, Vault};

async fn enrol_named(app: &TestApp, token: &str, number: &str) -> Uuid {
    let response = app
        .http
        .post(app.url("/v1/customers"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "phone": number, "name": "Rotating Customer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    Uuid::parse_str(body["customer_id"].as_str().unwrap()).unwrap()
}

/// Each customer's phone number, opened with `vault` from the key table and the events.
async fn open_all(app: &TestApp, vault: &Vault) -> BTreeMap<Uuid, String> {
    let db = admin_client(&dbname(&app.database_url)).await;
    let mut opened = BTreeMap::new();
    for row in db
        .query(
            "SELECT customer_id, tenant_id, master_key_id, wrapped_key FROM customer_keys",
            &[],
        )
        .await
        .unwrap()
    {
        let customer = CustomerId::from_uuid(row.get(0));
        let tenant = TenantId::from_uuid(row.get(1));
        let wrapped = WrappedDataKey {
            master_key_id: row.get(2),
            bytes: row.get(3),
        };
        let first = schema::store::read_stream(&db, StreamId::Customer(customer), 0, 1)
            .await
            .unwrap();
        let Ok(Event::CustomerEnrolled(enrolled)) = first[0].decode() else {
            panic!("the first event is not an enrolment");
        };
        let key = vault.unwrap(&wrapped, tenant, customer).unwrap();
        let personal = vault
            .open(&key, tenant, customer, &enrolled.personal_data.unwrap())
            .unwrap();
        opened.insert(customer.as_uuid(), personal.phone.as_str().to_owned());
    }
    opened
}

#[tokio::test]
async fn master_and_blind_index_keys_rotate_without_losing_a_customer() {
    let app = TestApp::spawn().await;
    let (tenant, owner_token) = crate::helpers::sign_up_owner(&app.http, &app.address).await;
    let numbers: Vec<String> = (0..3).map(|_| phone()).collect();
    let mut customers = Vec::new();
    for number in &numbers {
        customers.push(enrol_named(&app, &owner_token, number).await);
    }
    let erased = app
        .http
        .post(app.url(&format!("/v1/customers/{}/erasure", customers[2])))
        .bearer_auth(&owner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    let before = open_all(&app, &crate::helpers::test_vault()).await;
    assert_eq!(
        before.len(),
        2,
        "the erased customer has no key left to rotate"
    );

    // Master key: a new first key; the old one still unwraps during the rotation.
    let new_master = format!("rotated:{}", vault::generate_key_base64().unwrap());
    let during = Vault::from_config(
        &format!("{new_master},{}", TEST_KEYS.master_keys),
        &TEST_KEYS.blind_index_key,
    )
    .unwrap();
    let mut owner = admin_client(&dbname(&app.database_url)).await;
    let done = loyalty::keys::rewrap(&mut owner, &during).await.unwrap();
    assert_eq!(done.of("customer_keys"), 2);
    assert_eq!(done.total(), 2);
    assert!(done.failures.is_empty(), "{:?}", done.failures);
    assert_eq!(
        loyalty::keys::rewrap(&mut owner, &during)
            .await
            .unwrap()
            .total(),
        0,
        "not idempotent"
    );
    // After: the old master key is gone from the configuration and nothing is lost.
    let after = Vault::from_config(&new_master, &TEST_KEYS.blind_index_key).unwrap();
    assert_eq!(open_all(&app, &after).await, before);

    // Blind-index key: every index is recomputed and the new key finds every number.
    let new_index_key = vault::generate_key_base64().unwrap();
    let reindexed = Vault::from_config(&new_master, &new_index_key).unwrap();
    assert_eq!(
        loyalty::keys::reindex(&owner, &after, &reindexed)
            .await
            .unwrap(),
        2
    );
    for (customer, number) in &before {
        let index = reindexed.phone_index(tenant, &PhoneNumber::parse(number).unwrap());
        let found: Uuid = owner
            .query_one(
                "SELECT customer_id FROM customer_phone_index WHERE phone_index = $1",
                &[&index.0.as_slice()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(&found, customer);
        let old_index = after.phone_index(tenant, &PhoneNumber::parse(number).unwrap());
        let stale: i64 = owner
            .query_one(
                "SELECT count(*) FROM customer_phone_index WHERE phone_index = $1",
                &[&old_index.0.as_slice()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stale, 0, "an index under the old key survived");
    }
    app.stop().await;
}

#[test]
fn generated_keys_are_accepted_by_the_vault() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(["keys", "generate"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
            .to_owned()
    };
    assert!(Vault::from_config(
        &value("LOYALTY_MASTER_KEYS"),
        &value("LOYALTY_BLIND_INDEX_KEY")
    )
    .is_ok());
    assert!(value("LOYALTY_JWT_KEYS").contains(':'));
}

/// `loyalty keys rewrap` also re-seals tenants' WhatsApp access tokens: after it, the token
/// opens with the new master key alone.
#[tokio::test]
async fn rewrap_covers_whatsapp_access_tokens() {
    let app = TestApp::spawn().await;
    let (tenant, owner_token) = crate::helpers::sign_up_owner(&app.http, &app.address).await;
    let number = "200000000000303";
    let response = app
        .http
        .put(app.url("/v1/whatsapp/number"))
        .bearer_auth(&owner_token)
        .json(&serde_json::json!({
            "phone_number_id": number,
            "display_phone_number": "+2348010000303",
            "access_token": "EAArotate-me",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let new_master = format!("rotated:{}", vault::generate_key_base64().unwrap());
    let during = Vault::from_config(
        &format!("{new_master},{}", TEST_KEYS.master_keys),
        &TEST_KEYS.blind_index_key,
    )
    .unwrap();
    let mut owner = admin_client(&dbname(&app.database_url)).await;
    let done = loyalty::keys::rewrap(&mut owner, &during).await.unwrap();
    assert_eq!(done.of("whatsapp_numbers"), 1);
    assert_eq!(done.total(), 1);
    assert_eq!(
        loyalty::keys::rewrap(&mut owner, &during)
            .await
            .unwrap()
            .total(),
        0
    );

    let after = Vault::from_config(&new_master, &TEST_KEYS.blind_index_key).unwrap();
    let row = owner
        .query_one(
            "SELECT master_key_id, wrapped_key, sealed_access_token FROM whatsapp_numbers \
              WHERE phone_number_id = $1",
            &[&number],
        )
        .await
        .unwrap();
    let record = vault::SealedRecord {
        master_key_id: row.get(0),
        wrapped_key: row.get(1),
        sealed: row.get(2),
    };
    assert!(record.master_key_id.starts_with("rotated"));
    let context = schema::whatsapp_numbers::token_seal_context(number, tenant);
    assert_eq!(
        after.open_record(&context, &record).unwrap(),
        b"EAArotate-me".to_vec()
    );
    app.stop().await;
}

/// Opens every sealed WhatsApp record with `vault` and returns, per table, what each row
/// holds (keyed by the row's key): the inbox's content, the conversations' wa_ids, the
/// outbox's recipients and the numbers' access tokens. Panics on a row that does not open.
async fn open_whatsapp_records(
    db: &tokio_postgres::Client,
    vault: &Vault,
) -> BTreeMap<&'static str, BTreeMap<String, Vec<u8>>> {
    let queries: [(&str, &str); 4] = [
        (
            "whatsapp_inbox",
            "SELECT inbox_id::text, dedupe_key, master_key_id, wrapped_key, sealed \
               FROM whatsapp_inbox",
        ),
        (
            "whatsapp_conversations",
            "SELECT encode(customer_digest, 'hex'), phone_number_id, master_key_id, \
                    wrapped_key, sealed_wa_id FROM whatsapp_conversations",
        ),
        (
            "whatsapp_outbox",
            "SELECT message_id::text, dedupe_key, master_key_id, wrapped_key, sealed_recipient \
               FROM whatsapp_outbox",
        ),
        (
            "whatsapp_numbers",
            "SELECT phone_number_id, tenant_id::text, master_key_id, wrapped_key, \
                    sealed_access_token FROM whatsapp_numbers \
              WHERE sealed_access_token IS NOT NULL",
        ),
    ];
    let mut opened = BTreeMap::new();
    for (table, sql) in queries {
        let mut rows = BTreeMap::new();
        for row in db.query(sql, &[]).await.unwrap() {
            let (key, other): (String, String) = (row.get(0), row.get(1));
            let context = match table {
                "whatsapp_inbox" => schema::inbox::seal_context(&other),
                "whatsapp_outbox" => outbox_seal_context(&other),
                "whatsapp_conversations" => {
                    let digest: [u8; 32] = hex_bytes(&key).try_into().unwrap();
                    conversation_seal_context(&digest, &other)
                }
                _ => schema::whatsapp_numbers::token_seal_context(
                    &key,
                    TenantId::from_uuid(Uuid::parse_str(&other).unwrap()),
                ),
            };
            let record = SealedRecord {
                master_key_id: row.get(2),
                wrapped_key: row.get(3),
                sealed: row.get(4),
            };
            let plain = vault
                .open_record(&context, &record)
                .unwrap_or_else(|e| panic!("{table} {key} does not open: {e}"));
            rows.insert(key, plain);
        }
        opened.insert(table, rows);
    }
    opened
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// How many rows of each sealed table are wrapped by a master key other than `master`.
async fn not_under(db: &tokio_postgres::Client, master: &str) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in SEALED_TABLES {
        let count: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE master_key_id <> $1"),
                &[&master],
            )
            .await
            .unwrap()
            .get(0);
        counts.insert(table, count);
    }
    counts
}

/// `loyalty keys rewrap` covers every sealed record, not only customers' keys and tokens: a
/// customer who joined over WhatsApp leaves inbox rows, a conversation and outbox replies
/// under master key A; after rotating to [B, A] and re-wrapping, a vault with B alone opens
/// all of them. Every table must have rows to re-wrap, so skipping any one of them fails.
/// A row whose master key is gone is reported (table and key) without stopping the others,
/// and makes the command exit non-zero.
#[tokio::test]
async fn rewrap_covers_every_sealed_whatsapp_record() {
    let app = TestApp::spawn().await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let ada = phone();
    chat.say(&ada, &format!("JOIN {code}")).await;
    chat.reply(&ada, 1).await;
    chat.say(&ada, "POINTS").await;
    chat.reply(&ada, 2).await;
    processed_everything(&app).await;
    // A tenant's own number with a sealed access token.
    let (_, owner_token) = crate::helpers::sign_up_owner(&app.http, &app.address).await;
    let response = app
        .http
        .put(app.url("/v1/whatsapp/number"))
        .bearer_auth(&owner_token)
        .json(&serde_json::json!({
            "phone_number_id": "200000000000404",
            "display_phone_number": "+2348010000404",
            "access_token": "EAAevery-record",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let mut owner = admin_client(&dbname(&app.database_url)).await;
    // Every table with a wrapped key is one that `rewrap` goes through.
    let wrapped: std::collections::BTreeSet<String> = owner
        .query(
            "SELECT table_name::text FROM information_schema.columns \
              WHERE column_name = 'wrapped_key' AND table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        wrapped,
        SEALED_TABLES.iter().map(|t| t.to_string()).collect(),
        "a table with a wrapped key that `loyalty keys rewrap` does not cover"
    );
    let old = crate::helpers::test_vault();
    let before_customers = open_all(&app, &old).await;
    let before = open_whatsapp_records(&owner, &old).await;
    assert_eq!(before_customers.len(), 1, "the member joined over WhatsApp");
    let conversation = before["whatsapp_conversations"].values().next().unwrap();
    assert_eq!(conversation, wa_id(&ada).as_bytes());
    assert!(before["whatsapp_outbox"]
        .values()
        .all(|recipient| recipient == wa_id(&ada).as_bytes()));

    // A conversation whose wrapped key belongs to a master key no longer configured.
    let lost = Vault::from_config(
        &format!("gone:{}", vault::generate_key_base64().unwrap()),
        &TEST_KEYS.blind_index_key,
    )
    .unwrap();
    let lost_digest = [7u8; 32];
    let lost_record = lost
        .seal_record(&conversation_seal_context(&lost_digest, "lost"), b"1")
        .unwrap();
    owner
        .execute(
            "INSERT INTO whatsapp_conversations (customer_digest, phone_number_id, state, \
               master_key_id, wrapped_key, sealed_wa_id, last_inbound_at) \
             VALUES ($1, 'lost', '{}', $2, $3, $4, now())",
            &[
                &lost_digest.as_slice(),
                &lost_record.master_key_id,
                &lost_record.wrapped_key,
                &lost_record.sealed,
            ],
        )
        .await
        .unwrap();

    let new_master = format!("rotated:{}", vault::generate_key_base64().unwrap());
    let rotation = format!("{new_master},{}", TEST_KEYS.master_keys);
    let during = Vault::from_config(&rotation, &TEST_KEYS.blind_index_key).unwrap();
    let mut expected = not_under(&owner, "rotated").await;
    *expected.get_mut("whatsapp_conversations").unwrap() -= 1;
    for (table, count) in &expected {
        assert!(
            *count > 0,
            "no {table} rows to re-wrap: the test covers nothing"
        );
    }
    // Pages of one row: every table crosses pages, past the failing row too.
    let done = loyalty::keys::rewrap_in_pages(&mut owner, &during, 1)
        .await
        .unwrap();
    let counts: BTreeMap<&str, i64> = done
        .counts
        .iter()
        .map(|(table, count)| (*table, *count as i64))
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(done.failures.len(), 1, "{:?}", done.failures);
    let failure = &done.failures[0];
    assert_eq!(failure.table, "whatsapp_conversations");
    assert_eq!(
        failure.key,
        format!("{} on lost", "07".repeat(32)),
        "the failing row is named by its key"
    );
    assert_eq!(
        failure.error,
        vault::VaultError::UnknownMasterKey("gone".into())
    );

    // The command: per-table counts (nothing left), the failure named, a non-zero exit.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(["keys", "rewrap"])
        .envs(key_env())
        .env("LOYALTY_MASTER_KEYS", &rotation)
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    for table in SEALED_TABLES {
        assert!(stdout.contains(&format!("{table}: 0")), "{stdout}");
    }
    assert!(
        stderr.contains(&format!(
            "whatsapp_conversations {} on lost",
            "07".repeat(32)
        )),
        "{stderr}"
    );

    // Idempotent: nothing left to re-wrap but the lost row.
    owner
        .execute(
            "DELETE FROM whatsapp_conversations WHERE phone_number_id = 'lost'",
            &[],
        )
        .await
        .unwrap();
    let again = loyalty::keys::rewrap(&mut owner, &during).await.unwrap();
    assert_eq!(again.total(), 0);
    assert!(again.failures.is_empty(), "{:?}", again.failures);
    assert!(not_under(&owner, "rotated").await.values().all(|n| *n == 0));

    // The old master key dropped: every record still opens, to the same contents.
    let after = Vault::from_config(&new_master, &TEST_KEYS.blind_index_key).unwrap();
    assert_eq!(open_whatsapp_records(&owner, &after).await, before);
    assert_eq!(open_all(&app, &after).await, before_customers);
    app.stop().await;
}

/// `rewrap` beside a running service: customers keep writing (each message re-seals their
/// conversation and queues a reply) while it re-wraps in pages of one row. The service keeps
/// sealing under the old key A but knows the new key B (`A,B`), so it reads rows re-wrapped
/// under its feet, and as many rows as possible race with the re-wrap. Rows re-sealed
/// between a page's read and its write are left as written (the guard), so nothing ends up
/// with a wrapped key that does not match its sealed bytes; a last run after the traffic
/// picks up the rows written under the old key meanwhile, and the new key alone opens
/// everything. Races are not forced: with the guard removed this fails only on some runs.
#[tokio::test]
async fn rewrap_beside_a_running_service_loses_nothing() {
    let new_master = format!("rotated:{}", vault::generate_key_base64().unwrap());
    let service_keys = format!("{},{new_master}", TEST_KEYS.master_keys);
    let app =
        TestApp::spawn_with_settings(|settings| settings.master_keys = Some(service_keys)).await;
    let code = vendor_code(&app, app.tenant_id).await;
    let chat = Chat::shared(&app);
    let people: Vec<String> = (0..4).map(|_| phone()).collect();
    for person in &people {
        chat.say(person, &format!("JOIN {code}")).await;
    }
    // Replies are counted, not opened: the helpers' vault has A alone.
    let replies = |expected: usize| {
        let app = &app;
        async move {
            let what = format!("{expected} replies");
            wait_for(WAIT, &what, || async {
                count(app, "SELECT count(*) FROM whatsapp_outbox").await == expected as i64
            })
            .await;
            processed_everything(app).await;
        }
    };
    replies(people.len()).await;

    let during = Vault::from_config(
        &format!("{new_master},{}", TEST_KEYS.master_keys),
        &TEST_KEYS.blind_index_key,
    )
    .unwrap();
    let mut owner = admin_client(&dbname(&app.database_url)).await;
    let rounds = 10;
    let traffic = async {
        for _ in 0..rounds {
            for person in &people {
                chat.say(person, "POINTS").await;
            }
        }
    };
    let rewraps = async {
        let mut failures = 0;
        for _ in 0..rounds {
            let done = loyalty::keys::rewrap_in_pages(&mut owner, &during, 1)
                .await
                .unwrap();
            failures += done.failures.len();
        }
        failures
    };
    let ((), failures) = tokio::join!(traffic, rewraps);
    assert_eq!(failures, 0);
    replies(people.len() * (1 + rounds)).await;

    let last = loyalty::keys::rewrap(&mut owner, &during).await.unwrap();
    assert!(last.failures.is_empty(), "{:?}", last.failures);
    assert_eq!(
        loyalty::keys::rewrap(&mut owner, &during)
            .await
            .unwrap()
            .total(),
        0
    );
    assert!(not_under(&owner, "rotated").await.values().all(|n| *n == 0));
    let after = Vault::from_config(&new_master, &TEST_KEYS.blind_index_key).unwrap();
    let opened = open_whatsapp_records(&owner, &after).await;
    let wa_ids: std::collections::BTreeSet<Vec<u8>> = people
        .iter()
        .map(|person| wa_id(person).into_bytes())
        .collect();
    let conversations: std::collections::BTreeSet<Vec<u8>> =
        opened["whatsapp_conversations"].values().cloned().collect();
    assert_eq!(conversations, wa_ids);
    assert_eq!(opened["whatsapp_outbox"].len(), people.len() * (1 + rounds));
    assert!(opened["whatsapp_outbox"]
        .values()
        .all(|recipient| wa_ids.contains(recipient)));
    assert_eq!(open_all(&app, &after).await.len(), people.len());
    app.stop().await;
}
