//! Rotating the personal-data keys: re-wrapping data keys under a new master key and
//! recomputing phone indexes under a new blind-index key, over a real database.

use crate::helpers::{admin_client, dbname, phone, TestApp, TEST_KEYS};
use ledger_core::command::WrappedDataKey;
use ledger_core::{CustomerId, Event, PhoneNumber, StreamId, TenantId};
use std::collections::BTreeMap;
use uuid::Uuid;
use vault::Vault;

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
    let owner = admin_client(&dbname(&app.database_url)).await;
    assert_eq!(loyalty::keys::rewrap(&owner, &during).await.unwrap(), 2);
    assert_eq!(
        loyalty::keys::rewrap(&owner, &during).await.unwrap(),
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
    let owner = admin_client(&dbname(&app.database_url)).await;
    assert_eq!(loyalty::keys::rewrap(&owner, &during).await.unwrap(), 1);
    assert_eq!(loyalty::keys::rewrap(&owner, &during).await.unwrap(), 0);

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
