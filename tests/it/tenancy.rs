//! Tenant isolation and personal-data protection, against the real server and PostgreSQL:
//! another tenant's key sees and changes nothing of ours (404, whatever the route); many
//! interleaved requests of two tenants through a two-connection pool never see each other's
//! rows; a connection with no tenant set sees nothing; no phone number or name in plain text
//! in the database dump or the logs; erasure shreds personal data and keeps the ledger.

use crate::helpers::{
    admin_client, create_tenant, dbname, fresh_database, key_env, phone, purchase, sign_up_owner,
    test_settings, test_vault, url_for, TestApp,
};
use ledger_core::chain::{ChainVerifier, StoredLink};
use ledger_core::{CustomerId, TenantId};
use loyalty::app::Components;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// One vendor system: the app's HTTP client with one tenant's API key.
#[derive(Clone)]
struct Vendor {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Vendor {
    /// A new tenant signed up through the API, acting as its owner (who may use every route).
    async fn signed_up(app: &TestApp) -> (TenantId, Self) {
        let (tenant, token) = sign_up_owner(&app.http, &app.address).await;
        (tenant, Vendor::of(app, &token))
    }

    fn of(app: &TestApp, key: &str) -> Self {
        Vendor {
            http: app.http.clone(),
            base: app.address.clone(),
            key: key.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn enrol(&self, phone: &str, name: Option<&str>) -> Uuid {
        let mut body = json!({ "phone": phone });
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        let (status, body) = self.post("/v1/customers", &body).await;
        assert_eq!(status, 201, "{body}");
        Uuid::parse_str(body["customer_id"].as_str().unwrap()).unwrap()
    }

    async fn buy(&self, customer: Uuid, amount_minor: i64) {
        let (status, body) = self
            .post("/v1/purchases", &purchase(customer, amount_minor))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    async fn search(&self, phone: &str) -> Vec<Uuid> {
        let (status, body) = self
            .post("/v1/customers/search", &json!({ "phone": phone }))
            .await;
        assert_eq!(status, 200, "{body}");
        ids_in(&body["customers"])
    }
}

fn ids_in(customers: &Value) -> Vec<Uuid> {
    customers
        .as_array()
        .expect("a list of customers")
        .iter()
        .map(|c| Uuid::parse_str(c["customer_id"].as_str().unwrap()).unwrap())
        .collect()
}

/// The rows of one customer across the tables that hold anything of theirs, as the owner
/// of the schema sees them: used to prove a refused request changed nothing.
async fn footprint(database_url: &str, customer: Uuid) -> Vec<i64> {
    let db = admin_client(&dbname(database_url)).await;
    let stream = format!("customer-{customer}");
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM events WHERE stream_id = $1), \
                    (SELECT count(*) FROM customer_keys WHERE customer_id = $2), \
                    (SELECT count(*) FROM customer_phone_index WHERE customer_id = $2), \
                    (SELECT coalesce(max(version), 0)::bigint FROM events WHERE stream_id = $1)",
            &[&stream, &customer],
        )
        .await
        .unwrap();
    (0..4).map(|i| row.get(i)).collect()
}

#[tokio::test]
async fn another_tenants_key_can_neither_read_nor_change_our_customers() {
    let app = TestApp::spawn().await;
    let (_, ours) = Vendor::signed_up(&app).await;
    let (_, theirs) = Vendor::signed_up(&app).await;

    // The same person is a customer of both vendors: one phone number, two customers.
    let shared_phone = phone();
    let our_customer = ours.enrol(&shared_phone, Some("Ada Obi")).await;
    ours.buy(our_customer, 500_000).await;
    let their_customer = theirs.enrol(&shared_phone, None).await;
    theirs.buy(their_customer, 20_000).await;
    app.wait_until_projected().await;
    let before = footprint(&app.database_url, our_customer).await;

    // Reads by id guessing: 404, exactly like an id that does not exist.
    let unknown = Uuid::now_v7();
    for path in ["", "/history", "/export"] {
        let (status, body) = theirs
            .get(&format!("/v1/customers/{our_customer}{path}"))
            .await;
        assert_eq!(status, 404, "GET …/{{ours}}{path}: {body}");
        let (unknown_status, unknown_body) =
            theirs.get(&format!("/v1/customers/{unknown}{path}")).await;
        assert_eq!(
            (status, &body["type"]),
            (unknown_status, &unknown_body["type"]),
            "another tenant's customer must look like no customer ({path})"
        );
    }
    // Writes: 404, and nothing written.
    for (path, body) in [
        ("/v1/purchases".to_owned(), purchase(our_customer, 100_000)),
        (
            format!("/v1/customers/{our_customer}/redemptions"),
            json!({ "points": 1, "description": "theft" }),
        ),
        (format!("/v1/customers/{our_customer}/erasure"), json!({})),
    ] {
        let (status, answer) = theirs.post(&path, &body).await;
        assert_eq!(status, 404, "POST {path}: {answer}");
    }
    // By phone number: their search finds their customer only.
    assert_eq!(theirs.search(&shared_phone).await, vec![their_customer]);
    assert_eq!(ours.search(&shared_phone).await, vec![our_customer]);
    // Lists: only their own.
    let (status, list) = theirs.get("/v1/customers?limit=200").await;
    assert_eq!(status, 200);
    assert_eq!(ids_in(&list["customers"]), vec![their_customer]);
    let (_, list) = ours.get("/v1/customers?limit=200").await;
    assert_eq!(ids_in(&list["customers"]), vec![our_customer]);

    assert_eq!(
        footprint(&app.database_url, our_customer).await,
        before,
        "a refused cross-tenant request changed our customer"
    );
    let (status, ours_seen) = ours.get(&format!("/v1/customers/{our_customer}")).await;
    assert_eq!(status, 200);
    assert_eq!(ours_seen["balance"], 50, "{ours_seen}");
    assert_eq!(ours_seen["name"], "Ada Obi");
    app.stop().await;
}

#[tokio::test]
async fn interleaved_requests_of_two_tenants_through_two_connections_never_cross() {
    let database_url = fresh_database().await;
    let mut settings = test_settings(&database_url);
    // Two connections for all requests of both tenants: every connection serves both,
    // alternately, so a tenant setting that outlived its transaction would show.
    settings.db_pool_size = 2;
    let app = TestApp::start(settings, Components::ALL).await;
    let a = Vendor::of(&app, &app.api_key);
    let (_, key_b) = create_tenant(&app.pool, &app.settings).await;
    let b = Vendor::of(&app, &key_b);

    let mut customers_a = Vec::new();
    let mut customers_b = Vec::new();
    let mut phones_a = Vec::new();
    let mut phones_b = Vec::new();
    for _ in 0..6 {
        let (pa, pb) = (phone(), phone());
        customers_a.push(a.enrol(&pa, None).await);
        customers_b.push(b.enrol(&pb, None).await);
        phones_a.push(pa);
        phones_b.push(pb);
    }
    for (ca, cb) in customers_a.iter().zip(&customers_b) {
        a.buy(*ca, 100_000).await;
        b.buy(*cb, 300_000).await;
    }
    app.wait_until_projected().await;
    let own_a: HashSet<Uuid> = customers_a.iter().copied().collect();
    let own_b: HashSet<Uuid> = customers_b.iter().copied().collect();

    let mut requests = Vec::new();
    for round in 0..60 {
        for (vendor, own, other, own_phones, other_phones) in [
            (&a, &customers_a, &customers_b, &phones_a, &phones_b),
            (&b, &customers_b, &customers_a, &phones_b, &phones_a),
        ] {
            let vendor = vendor.clone();
            let mine = own[round % own.len()];
            let foreign = other[round % other.len()];
            let my_phone = own_phones[round % own_phones.len()].clone();
            let foreign_phone = other_phones[round % other_phones.len()].clone();
            requests.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                let (status, body) = vendor.get(&format!("/v1/customers/{mine}")).await;
                assert_eq!(status, 200, "{body}");
                seen.push(Uuid::parse_str(body["customer_id"].as_str().unwrap()).unwrap());
                let (status, body) = vendor.get("/v1/customers?limit=200").await;
                assert_eq!(status, 200, "{body}");
                seen.extend(ids_in(&body["customers"]));
                let (status, body) = vendor.get(&format!("/v1/customers/{mine}/history")).await;
                assert_eq!(status, 200, "{body}");
                seen.extend(vendor.search(&my_phone).await);
                assert!(vendor.search(&foreign_phone).await.is_empty());
                let (status, _) = vendor.get(&format!("/v1/customers/{foreign}")).await;
                assert_eq!(status, 404, "another tenant's customer was served");
                let (status, _) = vendor
                    .get(&format!("/v1/customers/{foreign}/history"))
                    .await;
                assert_eq!(status, 404, "another tenant's history was served");
                seen
            }));
        }
    }
    let mut requests_checked = 0;
    for (i, request) in requests.into_iter().enumerate() {
        let seen = request.await.expect("a request task panicked");
        let own = if i % 2 == 0 { &own_a } else { &own_b };
        for id in seen {
            assert!(
                own.contains(&id),
                "request {i} saw another tenant's customer {id}"
            );
        }
        requests_checked += 1;
    }
    assert_eq!(requests_checked, 120);
    app.stop().await;
}

#[tokio::test]
async fn a_connection_with_no_tenant_set_sees_no_tenant_rows() {
    let app = TestApp::spawn().await;
    let vendor = Vendor::of(&app, &app.api_key);
    let customer = vendor.enrol(&phone(), Some("Ngozi")).await;
    vendor.buy(customer, 250_000).await;
    // An owner account too, so the accounts tables hold rows (user, refresh token).
    sign_up_owner(&app.http, &app.address).await;
    app.wait_until_projected().await;

    let tenant_tables = [
        "tenants",
        "users",
        "refresh_tokens",
        "events",
        "tenant_heads",
        "idempotency_records",
        "customer_phone_index",
        "customer_keys",
        "api_keys",
        "projection.customer_balances",
        "projection.point_lots",
    ];
    let admin = admin_client(&dbname(&app.database_url)).await;
    let app_role = role_client(&app.database_url, "loyalty_app").await;
    for table in tenant_tables {
        let sql = format!("SELECT count(*) FROM {table}");
        let held: i64 = admin.query_one(&sql, &[]).await.unwrap().get(0);
        assert!(
            held > 0,
            "{table} should hold rows for this test to mean anything"
        );
        let seen: i64 = app_role.query_one(&sql, &[]).await.unwrap().get(0);
        assert_eq!(
            seen, 0,
            "loyalty_app saw {seen} rows of {table} with no tenant set"
        );
    }
    // A tenant set inside a transaction ends with it.
    app_role.batch_execute("BEGIN").await.unwrap();
    app_role
        .execute(
            "SELECT set_config('loyalty.tenant_ids', $1, true)",
            &[&app.tenant_id.as_uuid().to_string()],
        )
        .await
        .unwrap();
    let inside: i64 = app_role
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    app_role.batch_execute("COMMIT").await.unwrap();
    let after: i64 = app_role
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(inside > 0);
    assert_eq!(after, 0, "the tenant scope outlived its transaction");

    // The roles own nothing and cannot bypass row-level security.
    let roles = admin
        .query(
            "SELECT r.rolname, r.rolbypassrls, r.rolsuper, \
                    (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid) \
             FROM pg_roles r WHERE r.rolname IN ('loyalty_app', 'loyalty_platform') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(roles.len(), 2);
    for role in roles {
        let name: String = role.get(0);
        assert!(!role.get::<_, bool>(1), "{name} may bypass RLS");
        assert!(!role.get::<_, bool>(2), "{name} is a superuser");
        assert_eq!(role.get::<_, i64>(3), 0, "{name} owns relations");
    }
    // The platform role reads events across tenants but no personal data or accounts.
    let platform = role_client(&app.database_url, "loyalty_platform").await;
    let events: i64 = platform
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(events > 0);
    for table in [
        "customer_keys",
        "customer_phone_index",
        "idempotency_records",
        "api_keys",
        "users",
        "refresh_tokens",
    ] {
        let refused = platform
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect_err("the platform role read a table it has no business reading");
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{table}: {refused}"
        );
    }
    app.stop().await;
}

async fn role_client(database_url: &str, role: &str) -> tokio_postgres::Client {
    let url = url_for(&dbname(database_url)).replace("user=postgres", &format!("user={role}"));
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting as {role}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[tokio::test]
async fn erasure_shreds_personal_data_and_keeps_the_ledger_verifiable() {
    let app = TestApp::spawn().await;
    let (tenant, vendor) = Vendor::signed_up(&app).await;
    let number = phone();
    let customer = vendor.enrol(&number, Some("Chidi Okeke")).await;
    vendor.buy(customer, 400_000).await;
    let (status, _) = vendor
        .post(
            &format!("/v1/customers/{customer}/redemptions"),
            &json!({ "points": 15, "description": "Free drink" }),
        )
        .await;
    assert_eq!(status, 201);

    // Before: the owner's export holds everything, with the actor of each event.
    let (status, export) = vendor
        .get(&format!("/v1/customers/{customer}/export"))
        .await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["personal_data"]["phone"], number.as_str());
    assert_eq!(export["personal_data"]["name"], "Chidi Okeke");
    assert_eq!(export["balance"], 25);
    let admin = admin_client(&dbname(&app.database_url)).await;
    let owner_id: Uuid = admin
        .query_one(
            "SELECT user_id FROM users WHERE tenant_id = $1 AND role = 'owner'",
            &[&tenant.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    for event in export["events"].as_array().unwrap() {
        assert_eq!(event["actor"]["user"], owner_id.to_string(), "{event}");
        assert!(Uuid::parse_str(event["correlation_id"].as_str().unwrap()).is_ok());
    }

    let (status, erased) = vendor
        .post(&format!("/v1/customers/{customer}/erasure"), &json!({}))
        .await;
    assert_eq!(status, 200, "{erased}");

    // The key and the blind index are gone; the sealed bytes in the event remain but open
    // for nobody, not even with the master keys.
    assert_eq!(footprint(&app.database_url, customer).await[1..3], [0, 0]);
    let enrolled: Vec<u8> = admin
        .query_one(
            "SELECT payload FROM events WHERE stream_id = $1 AND version = 1",
            &[&format!("customer-{customer}")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!contains(
        &enrolled,
        number.trim_start_matches('+').as_bytes()
    ));

    // The ledger still answers: balance kept, personal data gone (at once: the key is gone),
    // and, once the projector has applied CustomerErased, the read model says when.
    app.wait_until_projected().await;
    let (status, shown) = vendor.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&shown["phone"], &shown["name"], &shown["balance"]),
        (&Value::Null, &Value::Null, &json!(25))
    );
    assert!(shown["erased_at"].is_string(), "{shown}");
    let (_, export) = vendor
        .get(&format!("/v1/customers/{customer}/export"))
        .await;
    assert_eq!(export["personal_data"], Value::Null);
    assert_eq!(export["data_key"], Value::Null);
    assert_eq!(export["balance"], 25);
    let (status, history) = vendor
        .get(&format!("/v1/customers/{customer}/history"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(history["entries"][0]["type"], "CustomerErased");

    // Nothing new for an erased customer; a second erasure is refused too.
    let (status, refused) = vendor
        .post("/v1/purchases", &purchase(customer, 100_000))
        .await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (
            410,
            Some("https://loyalty-ledger.dev/problems/customer-erased")
        )
    );
    let (status, _) = vendor
        .post(&format!("/v1/customers/{customer}/erasure"), &json!({}))
        .await;
    assert_eq!(status, 410);

    // The hash chain still verifies from genesis to the stored head.
    let rows = admin
        .query(
            "SELECT global_position FROM events WHERE tenant_id = $1 ORDER BY tenant_sequence",
            &[&tenant.as_uuid()],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 6);
    let platform = app.platform_db().await;
    let all = schema::store::read_after(&**platform, schema::Position::default(), 10_000)
        .await
        .unwrap();
    let mut verifier = ChainVerifier::default();
    for event in all.iter().filter(|e| e.tenant_id == tenant) {
        verifier
            .push(StoredLink {
                fields: event.chain_fields(),
                previous_hash: &event.previous_hash,
                hash: &event.hash,
            })
            .unwrap_or_else(|e| panic!("the chain breaks after erasure: {e}"));
    }

    // The number may enrol again, as a new customer, and is found as that one only.
    let again = vendor.enrol(&number, Some("Chidi")).await;
    assert_ne!(again, customer);
    assert_eq!(vendor.search(&number).await, vec![again]);

    // The read model rebuilt from the events agrees.
    app.wait_until_projected().await;
    let rebuilt =
        projections::runner::rebuild(&projections::balances::Balances, &app.platform_pool)
            .await
            .unwrap();
    assert!(rebuilt > 0);
    let (_, shown) = vendor.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(shown["balance"], 25);
    assert!(shown["erased_at"].is_string());
    let _ = CustomerId::from_uuid(again);
    app.stop().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs `loyalty all` as a child process with debug logging, drives enrolments, look-ups,
/// purchases, bad input and an erasure with a known number and name, then searches the
/// database dump (`pg_dump`) and the child's logs for them in every spelling.
#[tokio::test]
async fn no_phone_number_or_name_in_plain_text_in_the_database_or_the_logs() {
    let database_url = fresh_database().await;
    let settings = test_settings(&database_url);
    let port = crate::helpers::free_port();
    let log_path = std::env::temp_dir().join(format!("loyalty-pii-{}.log", Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .arg("all")
        .env("DATABASE_URL", &database_url)
        .env("NATS_URL", &settings.nats_url)
        .env("LOYALTY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOYALTY_NATS_STREAM", &settings.nats_stream)
        .env("LOYALTY_NATS_SUBJECT_PREFIX", &settings.nats_subject_prefix)
        .env("RUST_LOG", "debug")
        .env("LOYALTY_LOG_FORMAT", "json")
        .envs(key_env())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawning loyalty all");

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    crate::helpers::wait_for(Duration::from_secs(30), "loyalty all to listen", || {
        let http = http.clone();
        let url = format!("{base}/ready");
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let (_, key) = sign_up_owner(&http, &base).await;
    let vendor = Vendor {
        http: http.clone(),
        base: base.clone(),
        key,
    };

    let number = "+2348031234567";
    let name = "Oluwaseun Adebayo-Quartz";
    let customer = vendor.enrol(number, Some(name)).await;
    vendor.buy(customer, 350_000).await;
    assert_eq!(vendor.search(number).await, vec![customer]);
    let (status, shown) = vendor.get(&format!("/v1/customers/{customer}")).await;
    assert_eq!((status, shown["phone"].as_str()), (200, Some(number)));
    // A second enrolment of the number and malformed numbers: refusals must not echo them.
    let (status, _) = vendor
        .post("/v1/customers", &json!({ "phone": number }))
        .await;
    assert_eq!(status, 409);
    let (status, _) = vendor
        .post("/v1/customers", &json!({ "phone": "+23480312345678999" }))
        .await;
    assert_eq!(status, 422);
    let other = vendor.enrol("+2348039876543", Some(name)).await;
    let (status, _) = vendor
        .post(&format!("/v1/customers/{other}/erasure"), &json!({}))
        .await;
    assert_eq!(status, 200);
    // Let the relay and the projector carry everything through JetStream.
    let admin = admin_client(&dbname(&database_url)).await;
    crate::helpers::wait_for(Duration::from_secs(30), "the projection", || {
        crate::helpers::projection_caught_up(&admin)
    })
    .await;

    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(url_for(&dbname(&database_url)))
        .output()
        .expect("running pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(dump.stdout.len() > 1_000, "the dump is suspiciously small");
    child.start_kill().ok();
    let _ = child.wait().await;
    let logs = std::fs::read(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(logs.len() > 1_000, "the debug log is suspiciously small");

    let spellings = [
        "+2348031234567",
        "2348031234567",
        "08031234567",
        "8031234567",
        "%2B2348031234567",
        "+23480312345678999",
        "2348039876543",
        "Oluwaseun",
        "Adebayo-Quartz",
    ];
    for spelling in spellings {
        assert!(
            !contains(&dump.stdout, spelling.as_bytes()),
            "the database dump contains {spelling:?}"
        );
        assert!(
            !contains(&logs, spelling.as_bytes()),
            "the logs contain {spelling:?}"
        );
    }
    // Nor any secret: the owner's access token, the master and blind-index keys.
    let master_key = crate::helpers::TEST_KEYS
        .master_keys
        .split_once(':')
        .unwrap()
        .1
        .to_owned();
    for (what, secret) in [
        ("the access token", vendor.key.as_str()),
        ("the master key", master_key.as_str()),
        (
            "the blind-index key",
            crate::helpers::TEST_KEYS.blind_index_key.as_str(),
        ),
    ] {
        assert!(
            !contains(&logs, secret.as_bytes()),
            "the logs contain {what}"
        );
        assert!(
            !contains(&dump.stdout, secret.as_bytes()),
            "the dump contains {what}"
        );
    }
    // The vault still opens what it sealed, so the absence above is encryption, not loss.
    let _ = test_vault();
    crate::helpers::delete_stream(&settings.nats_url, &settings.nats_stream).await;
}

/// Owners and staff see phone numbers and names; auditors and analysts see the same
/// customers without them and cannot search by phone; only owners export or erase.
#[tokio::test]
async fn personal_data_is_shown_to_owners_and_staff_only() {
    let app = TestApp::spawn().await;
    let (_, owner) = Vendor::signed_up(&app).await;
    let mut keys = std::collections::BTreeMap::new();
    for role in ["staff", "auditor", "analyst"] {
        let (status, created) = owner
            .post(
                "/v1/api-keys",
                &json!({ "label": format!("{role} key"), "role": role }),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        keys.insert(role, Vendor::of(&app, created["api_key"].as_str().unwrap()));
    }
    let number = phone();
    let customer = owner.enrol(&number, Some("Amaka")).await;
    let path = format!("/v1/customers/{customer}");

    for (role, vendor, sees_personal_data) in [
        ("owner", &owner, true),
        ("staff", &keys["staff"], true),
        ("auditor", &keys["auditor"], false),
        ("analyst", &keys["analyst"], false),
    ] {
        let (status, shown) = vendor.get(&path).await;
        assert_eq!(status, 200, "{role}: {shown}");
        let expected_phone = if sees_personal_data {
            json!(number)
        } else {
            Value::Null
        };
        assert_eq!(shown["phone"], expected_phone, "{role}");
        let (status, _) = vendor
            .post("/v1/customers/search", &json!({ "phone": number }))
            .await;
        assert_eq!(
            status,
            if sees_personal_data { 200 } else { 403 },
            "{role} search"
        );
        let (status, _) = vendor.get(&format!("{path}/export")).await;
        assert_eq!(
            status,
            if role == "owner" { 200 } else { 403 },
            "{role} export"
        );
    }
    for role in ["staff", "auditor", "analyst"] {
        let (status, refused) = keys[role]
            .post(&format!("{path}/erasure"), &json!({}))
            .await;
        assert_eq!(status, 403, "{role} erasure: {refused}");
    }
    // The refusals changed nothing: the customer is still there, with their data.
    let (_, shown) = owner.get(&path).await;
    assert_eq!(shown["name"], "Amaka");
    assert_eq!(shown["erased_at"], Value::Null);
    app.stop().await;
}
