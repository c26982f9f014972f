//! Test harness. `TestApp::spawn()` gives each test its own database (a clone of a migrated
//! template), its own JetStream stream and subject prefix, the app on port 0, and a
//! registered tenant with an API key.
//!
//! PostgreSQL and NATS must be running (scripts/test.sh starts them): a test that cannot
//! reach them fails loudly; nothing is skipped.

#![allow(dead_code)]

use ledger_core::{Currency, MinorUnits, Points, TenantId};
use loyalty::app::{self, Components, RunningApp};
use loyalty::conversations::{outbox_seal_context, CUSTOMER_DIGEST_PURPOSE};
use loyalty::settings::{EdgeSettings, NotifierSettings, Settings};
use loyalty::tenants::{self, NewTenant};
use serde_json::json;
use serde_json::Value;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;
use uuid::Uuid;
use vault::SealedRecord;
use whatsapp_sandbox::{AppSecret, BusinessNumber, Simulator};

/// Where the test PostgreSQL server is: DATABASE_URL's server (any database name), default
/// the local one with trust authentication.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn url_for(database: &str) -> String {
    let mut config = tokio_postgres::Config::from_str(&server_url())
        .expect("DATABASE_URL is not a valid PostgreSQL URL");
    config.dbname(database);
    // Rebuild a key-value connection string from the parsed config.
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let mut url = format!("host={host} port={port} user={user} dbname={database}");
    if let Some(password) = config.get_password() {
        url.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
    }
    url
}

pub async fn admin_client(database: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url_for(database), NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for the tests and is not reachable ({e}); run scripts/test.sh"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh, migrated database; returns its connection string.
pub async fn fresh_database() -> String {
    let template = format!("lt_template_{:016x}", schema::migrate::fingerprint());
    let admin = admin_client("postgres").await;
    admin
        .execute("SELECT pg_advisory_lock(7319100)", &[])
        .await
        .unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
            .await
            .unwrap();
        schema::migrate::migrate(&url_for(&building))
            .await
            .expect("migrating the template database");
        // Publish the template atomically, once no session is left on it.
        let mut renamed = false;
        for _ in 0..100 {
            if admin
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .await
                .is_ok()
            {
                renamed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(renamed, "could not publish the template database");
    }
    admin
        .execute("SELECT pg_advisory_unlock(7319100)", &[])
        .await
        .unwrap();
    let name = format!("lt_{}", Uuid::new_v4().simple());
    let mut last_error = None;
    for _ in 0..100 {
        match admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
        {
            Ok(()) => return url_for(&name),
            // "source database is being accessed by other users": another test is cloning.
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!("could not create a test database: {last_error:?}");
}

/// Personal-data keys of this test run: random, so no test can depend on a fixed key.
pub struct TestKeys {
    pub master_keys: String,
    pub blind_index_key: String,
}

pub static TEST_KEYS: std::sync::LazyLock<TestKeys> = std::sync::LazyLock::new(|| TestKeys {
    master_keys: format!("test1:{}", vault::generate_key_base64().unwrap()),
    blind_index_key: vault::generate_key_base64().unwrap(),
});

/// The vault of this test run's keys, as the app under test has it.
pub fn test_vault() -> vault::Vault {
    vault::Vault::from_config(&TEST_KEYS.master_keys, &TEST_KEYS.blind_index_key).unwrap()
}

/// An `EnrolCustomer` command sealed exactly as the API seals one.
pub fn enrol_command(
    tenant_id: TenantId,
    customer_id: ledger_core::CustomerId,
    phone: &str,
) -> ledger_core::Command {
    ledger_api::customers::EnrolmentRequest {
        phone: ledger_core::PhoneNumber::parse(phone).unwrap(),
        name: None,
        birthday: None,
        referral_code: None,
    }
    .into_command(
        &test_vault(),
        tenant_id,
        customer_id,
        None,
        chrono::Utc::now(),
    )
    .unwrap()
}

/// The WhatsApp app secret and verify token of this test run (random, like the keys).
pub static WHATSAPP_APP_SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| vault::generate_key_base64().unwrap());
pub static WHATSAPP_VERIFY_TOKEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("verify-{}", Uuid::new_v4().simple()));
/// The Cloud API access token of this test run (the sandbox accepts only it).
pub static WHATSAPP_ACCESS_TOKEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("EAAtoken{}", Uuid::new_v4().simple()));

/// The secret keys a `loyalty` child process needs besides its database and NATS, and an
/// ingest address on a free port (`loyalty all` also serves the WhatsApp webhook ingest,
/// whose default port would collide between tests running at once).
pub fn key_env() -> Vec<(String, String)> {
    vec![
        (
            "LOYALTY_WHATSAPP_APP_SECRET".into(),
            WHATSAPP_APP_SECRET.clone(),
        ),
        (
            "LOYALTY_WHATSAPP_VERIFY_TOKEN".into(),
            WHATSAPP_VERIFY_TOKEN.clone(),
        ),
        ("LOYALTY_INGEST_ADDR".into(), "127.0.0.1:0".into()),
        // `loyalty all` would start the WhatsApp sandbox on its fixed default port (8090),
        // colliding between tests; the one test of it sets its own port and turns it on.
        ("LOYALTY_SANDBOX_ENABLED".into(), "false".into()),
        (
            "LOYALTY_WHATSAPP_ACCESS_TOKEN".into(),
            WHATSAPP_ACCESS_TOKEN.clone(),
        ),
        ("LOYALTY_MASTER_KEYS".into(), TEST_KEYS.master_keys.clone()),
        (
            "LOYALTY_BLIND_INDEX_KEY".into(),
            TEST_KEYS.blind_index_key.clone(),
        ),
        ("LOYALTY_JWT_KEYS".into(), random_jwt_keys()),
    ]
}

/// Signs a new tenant up through `POST /v1/signup` at `base`; returns the tenant and its
/// owner's access token (an owner may do everything, personal-data routes included).
pub async fn sign_up_owner(http: &reqwest::Client, base: &str) -> (TenantId, String) {
    let response = http
        .post(format!("{base}/v1/signup"))
        .json(&serde_json::json!({
            "vendor_code": unique_vendor_code(),
            "business_name": "Owner's Shop",
            "owner_email": format!("owner-{}@example.com", Uuid::new_v4().simple()),
            "owner_password": "correct horse battery staple",
        }))
        .send()
        .await
        .expect("POST /v1/signup");
    assert_eq!(response.status(), 201, "signup failed");
    let body: Value = response.json().await.unwrap();
    let tenant = Uuid::parse_str(body["tenant_id"].as_str().unwrap()).unwrap();
    (
        TenantId::from_uuid(tenant),
        body["access_token"].as_str().unwrap().to_owned(),
    )
}

pub fn test_settings(database_url: &str) -> Settings {
    let unique = Uuid::new_v4().simple().to_string();
    Settings {
        database_url: Some(database_url.to_owned()),
        nats_url: nats_url(),
        http_addr: "127.0.0.1:0".into(),
        http_workers: Some(2),
        nats_stream: format!("LT_{unique}"),
        nats_subject_prefix: format!("lt{unique}.events"),
        db_pool_size: 8,
        app_database_url: None,
        platform_database_url: None,
        master_keys: Some(TEST_KEYS.master_keys.clone()),
        blind_index_key: Some(TEST_KEYS.blind_index_key.clone()),
        batch_size_max: 128,
        batch_wait_max_micros: 500,
        body_bytes_max: 16_384,
        expiry_interval_seconds: 24 * 3600,
        expiry_reminder_days: 7,
        expiry_reminder_interval_seconds: 24 * 3600,
        analytics_whatsapp_interval_seconds: 1,
        analytics_whatsapp_window_days: 3,
        notification_age_max_minutes: 1_440,
        broadcast_interval_ms: 100,
        broadcast_chunk_max: 200,
        broadcast_tenant_unsent_max: 200,
        edge: generous_edge_settings(),
        jwt_keys: Some(random_jwt_keys()),
        audit_signing_key: Some(vault::generate_key_base64().unwrap()),
        audit_sign_interval_seconds: 3_600,
        // Short, so tests of revocation and disabling need not wait a minute.
        auth_cache_ttl_seconds: 1,
        ingest_addr: "127.0.0.1:0".into(),
        whatsapp_app_secret: Some(WHATSAPP_APP_SECRET.clone()),
        whatsapp_verify_token: Some(WHATSAPP_VERIFY_TOKEN.clone()),
        ingest_body_bytes_max: webhook_ingest::server::BODY_BYTES_MAX_DEFAULT,
        ingest_committers: 2,
        whatsapp_shared_phone_number_id: "100000000000001".into(),
        whatsapp_shared_display_number: "15550001234".into(),
        whatsapp_inactivity_timeout_minutes: 30,
        whatsapp_processor_poll_ms: 50,
        whatsapp_processor_batch_max: 100,
        notifier: test_notifier_settings(),
    }
}

/// The notifier's settings for tests: a random token, short timeouts and retries. Its base
/// URL is the default (nothing listens there): a notifier test starts a sandbox and sets it.
pub fn test_notifier_settings() -> NotifierSettings {
    NotifierSettings {
        whatsapp_api_base_url: "http://127.0.0.1:9".into(),
        whatsapp_api_version: "v24.0".into(),
        whatsapp_access_token: Some(WHATSAPP_ACCESS_TOKEN.clone()),
        whatsapp_send_timeout_ms: 2_000,
        whatsapp_number_sends_per_second: 80,
        whatsapp_recipient_interval_ms: 0,
        whatsapp_retry_base_ms: 100,
        whatsapp_retry_cap_ms: 1_000,
        whatsapp_send_attempts_max: 8,
        notifier_poll_ms: 50,
    }
}

/// Rate limits far above anything a test drives from its one address and one key, so that
/// no test sees a 429 it did not ask for; a rate-limit test sets tight ones
/// (`TestApp::spawn_with_settings`).
pub fn generous_edge_settings() -> EdgeSettings {
    EdgeSettings {
        rate_limit_ip_per_second: 1_000_000,
        rate_limit_ip_burst: 1_000_000,
        rate_limit_principal_per_second: 1_000_000,
        rate_limit_principal_burst: 1_000_000,
        trusted_proxies: Default::default(),
        cors_origins: Default::default(),
    }
}

/// A fresh `LOYALTY_JWT_KEYS` value: one random 32-byte key.
pub fn random_jwt_keys() -> String {
    let key: Vec<u8> = Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    format!("test:{}", base64_standard(&key))
}

/// Standard base64 (the tests need it for one key; not worth a dependency).
pub fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A vendor code no other test uses: `T` and 19 hex digits of a random UUID, upper-case.
pub fn unique_vendor_code() -> String {
    let hex = Uuid::new_v4().simple().to_string().to_uppercase();
    format!("T{}", &hex[..19])
}

pub struct TestApp {
    pub address: String,
    /// `http://<ingest address>` when the WhatsApp webhook ingest runs, else empty.
    pub ingest_address: String,
    /// `http://<sandbox address>` when the in-process WhatsApp sandbox runs, else empty.
    pub sandbox_address: String,
    pub settings: Settings,
    pub database_url: String,
    pub http: reqwest::Client,
    /// The app's tenant-scoped pool (`loyalty_app`): sees a tenant's rows only inside
    /// `schema::tenancy` scopes, like the API and the writer.
    pub pool: schema::Pool,
    /// The cross-tenant pool (`loyalty_platform`) of the relay, projectors and expiry scan.
    pub platform_pool: schema::Pool,
    pub tenant_id: TenantId,
    pub api_key: String,
    running: Option<RunningApp>,
}

/// Registers a tenant (1 point per 10,000 minor units, 180-day lots) with a unique vendor
/// code, through the same code as `loyalty tenant create`, and returns it.
pub async fn create_tenant(pool: &schema::Pool, _settings: &Settings) -> (TenantId, String) {
    let vendor_code = schema::accounts::VendorCode::parse(&unique_vendor_code()).unwrap();
    let tenant = NewTenant::per_amount_spent(
        vendor_code,
        "Test Shop".into(),
        Currency::NGN,
        180,
        MinorUnits::new(10_000),
        Points::new(1),
        MinorUnits::ZERO,
    )
    .unwrap();
    let created = tenants::create(pool, tenant)
        .await
        .expect("creating a tenant");
    (created.tenant_id, created.api_key.plaintext.clone())
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Components {
            expiry_schedule: false,
            notifier: false,
            notifications_projector: false,
            expiry_reminders: false,
            // Tests sign with `loyalty::audit::run_once` at the moment they choose.
            audit_signer: false,
            ..Components::ALL
        })
        .await
    }

    /// The default components, with settings adjusted by `adjust` (e.g. tight rate limits).
    pub async fn spawn_with_settings(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let database_url = fresh_database().await;
        let mut settings = test_settings(&database_url);
        adjust(&mut settings);
        Self::start(
            settings,
            Components {
                expiry_schedule: false,
                notifier: false,
                notifications_projector: false,
                expiry_reminders: false,
                ..Components::ALL
            },
        )
        .await
    }

    pub async fn spawn_with(components: Components) -> TestApp {
        let database_url = fresh_database().await;
        let settings = test_settings(&database_url);
        Self::start(settings, components).await
    }

    /// The WhatsApp pipeline as `loyalty all` runs it on a local machine: API, ingest,
    /// conversation processor, notifier, relay and balances projector, and the in-process
    /// sandbox (through `loyalty::sandbox::for_all`, as `loyalty all` does) on a free port,
    /// the notifier sending to it, its status webhooks signed to the ingest. Settings
    /// adjusted by `adjust` (e.g. a private NATS); sandbox options change at run time
    /// (`PUT /sandbox/options`). Without the ledger notifications (receipts, reminders), so
    /// what reaches the customer is only the conversation's replies; see
    /// [`TestApp::spawn_whatsapp_with_notifications`].
    pub async fn spawn_whatsapp(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_whatsapp_components(
            adjust,
            Components {
                expiry_schedule: false,
                notifications_projector: false,
                expiry_reminders: false,
                ..Components::ALL
            },
        )
        .await
    }

    /// [`TestApp::spawn_whatsapp`] with the notifications projector and the reminder job too:
    /// every component of `loyalty all` but the expiry schedule.
    pub async fn spawn_whatsapp_with_notifications(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_whatsapp_components(
            adjust,
            Components {
                expiry_schedule: false,
                ..Components::ALL
            },
        )
        .await
    }

    /// [`TestApp::spawn_whatsapp`] whose sandbox also sends from `numbers`
    /// (`LOYALTY_SANDBOX_NUMBERS`: `phone_number_id:digits[:token]`, comma-separated).
    pub async fn spawn_whatsapp_with_numbers(numbers: &str) -> TestApp {
        Self::spawn_whatsapp_numbers(
            |_| {},
            Components {
                expiry_schedule: false,
                notifications_projector: false,
                expiry_reminders: false,
                ..Components::ALL
            },
            numbers,
        )
        .await
    }

    /// [`TestApp::spawn_whatsapp`] with exactly `components` (e.g. without the notifier or
    /// the broadcast feeder, to drive them by hand).
    pub async fn spawn_whatsapp_components(
        adjust: impl FnOnce(&mut Settings),
        components: Components,
    ) -> TestApp {
        Self::spawn_whatsapp_numbers(adjust, components, "").await
    }

    async fn spawn_whatsapp_numbers(
        adjust: impl FnOnce(&mut Settings),
        components: Components,
        numbers: &str,
    ) -> TestApp {
        let database_url = fresh_database().await;
        let mut settings = test_settings(&database_url);
        let sandbox_addr = format!("127.0.0.1:{}", free_port());
        settings.notifier.whatsapp_api_base_url = format!("http://{sandbox_addr}");
        adjust(&mut settings);
        let sandbox_settings = loyalty::sandbox::SandboxSettings {
            sandbox_addr,
            sandbox_app_secret: Some(WHATSAPP_APP_SECRET.clone()),
            // Replaced by the ingest's own address when the ingest runs in the process.
            sandbox_webhook_url: "http://127.0.0.1:9/webhooks/whatsapp".into(),
            sandbox_business_number: settings.whatsapp_shared_display_number.clone(),
            sandbox_phone_number_id: settings.whatsapp_shared_phone_number_id.clone(),
            sandbox_waba_id: "100000000000000".into(),
            sandbox_numbers: numbers.to_owned(),
            sandbox_access_token: Some(WHATSAPP_ACCESS_TOKEN.clone()),
            sandbox_enforce_window: false,
            sandbox_status_delay_ms: 10,
            sandbox_status_order: "in_order".into(),
        };
        let sandbox = loyalty::sandbox::for_all(&settings, &sandbox_settings, true)
            .expect("the sandbox settings")
            .expect("the notifier's base URL is the sandbox's address");
        Self::start_with_sandbox(settings, components, Some(sandbox)).await
    }

    pub async fn start(settings: Settings, components: Components) -> TestApp {
        Self::start_with_sandbox(settings, components, None).await
    }

    async fn start_with_sandbox(
        settings: Settings,
        components: Components,
        sandbox: Option<app::InProcessSandbox>,
    ) -> TestApp {
        init_test_logging();
        let running = app::start_with_sandbox(&settings, components, sandbox)
            .await
            .expect("starting the app");
        let pool = running.pool.clone();
        let platform_pool = running.platform_pool.clone();
        let (tenant_id, api_key) = create_tenant(&pool, &settings).await;
        TestApp {
            address: running
                .http_addr
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            ingest_address: running
                .ingest_addr
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            sandbox_address: running
                .sandbox_addr
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            database_url: settings.database_url.clone().unwrap_or_default(),
            settings,
            http: reqwest::Client::new(),
            pool,
            platform_pool,
            tenant_id,
            api_key,
            running: Some(running),
        }
    }

    /// Stops the app and deletes its JetStream stream (each test has its own).
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        delete_stream(&self.settings.nats_url, &self.settings.nats_stream).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn enrol(&self, phone: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/customers"))
            .bearer_auth(&self.api_key)
            .json(&serde_json::json!({ "phone": phone }))
            .send()
            .await
            .expect("POST /v1/customers")
    }

    /// Enrols a customer and returns its id.
    pub async fn enrolled_customer(&self, phone: &str) -> Uuid {
        let response = self.enrol(phone).await;
        assert_eq!(response.status(), 201, "enrolment failed");
        let body: Value = response.json().await.unwrap();
        Uuid::parse_str(body["customer_id"].as_str().unwrap()).unwrap()
    }

    pub async fn post_purchase(&self, idempotency_key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/purchases"))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .expect("POST /v1/purchases")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        idempotency_key: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.api_key)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST")
    }

    pub async fn redeem(
        &self,
        idempotency_key: &str,
        customer: Uuid,
        points: i64,
    ) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/customers/{customer}/redemptions")))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", idempotency_key)
            .json(&serde_json::json!({ "points": points, "description": "test reward" }))
            .send()
            .await
            .expect("POST redemptions")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("GET")
    }

    /// `GET path` answered 200, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// Posts `value` (a webhook body) to the ingest, signed as Meta signs it; asserts 200.
    pub async fn post_webhook(&self, value: &Value) {
        let body = value.to_string().into_bytes();
        let secret = whatsapp_sandbox::AppSecret::new(WHATSAPP_APP_SECRET.as_str()).unwrap();
        let signature = webhook_ingest::signature::sign(&secret, &body);
        let status = whatsapp_sandbox::simulator::post_signed(
            &reqwest::Client::new(),
            &format!("{}/webhooks/whatsapp", self.ingest_address),
            body,
            &signature,
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }

    /// A connection of the app's tenant-scoped role: it sees nothing outside a scope.
    pub async fn db(&self) -> deadpool_postgres::Object {
        self.pool.get().await.expect("a database connection")
    }

    /// A connection of the platform role: every tenant's events and read-model rows.
    pub async fn platform_db(&self) -> deadpool_postgres::Object {
        self.platform_pool
            .get()
            .await
            .expect("a platform database connection")
    }

    pub async fn event_count(&self) -> i64 {
        let client = admin_client(&dbname(&self.database_url)).await;
        client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits (bounded) until the balances projector has applied every customer event.
    pub async fn wait_until_projected(&self) {
        let client = admin_client(&dbname(&self.database_url)).await;
        wait_for(
            Duration::from_secs(30),
            "the balances projection to catch up",
            || projection_caught_up(&client),
        )
        .await;
    }
}

pub fn dbname(url: &str) -> String {
    url.split_whitespace()
        .find_map(|part| part.strip_prefix("dbname="))
        .map(str::to_owned)
        .or_else(|| {
            tokio_postgres::Config::from_str(url)
                .ok()
                .and_then(|c| c.get_dbname().map(str::to_owned))
        })
        .expect("database name")
}

/// Polls `condition` until it holds or `limit` passes (then panics naming `what`).
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn purchase(customer: Uuid, amount_minor: i64) -> Value {
    serde_json::json!({ "customer_id": customer, "amount_minor": amount_minor })
}

/// A random valid Nigerian mobile number in E.164.
pub fn phone() -> String {
    let n = Uuid::new_v4().as_u128() % 100_000_000;
    format!("+23480{n:08}")
}

/// Deletes a test's JetStream stream so test runs do not pile streams up on a shared server.
pub async fn delete_stream(nats_url: &str, stream: &str) {
    if let Ok(client) = async_nats::connect(nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(stream)
            .await;
    }
}

/// A small deterministic generator (xorshift64*), so a randomized test can print its seed
/// and be replayed exactly.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> (Rng, u64) {
        let seed = std::env::var("TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| Uuid::new_v4().as_u64_pair().0 | 1);
        (Rng(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `low..high` for test workloads.
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low) as u64) as i64
    }
}

/// With `TEST_LOG=1`, the app's logs go to stderr (silent otherwise, like zero2prod).
pub fn init_test_logging() {
    static INIT: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("TEST_LOG").is_some() {
        INIT.call_once(|| {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .with_test_writer()
                .try_init();
        });
    }
}

/// Whether the balances read model reflects every customer event: the sum of each customer
/// stream's last version equals the sum of the versions the read model has applied.
pub async fn projection_caught_up(db: &tokio_postgres::Client) -> bool {
    let row = db
        .query_one(
            "SELECT \
               (SELECT coalesce(sum(max_version), 0) FROM \
                  (SELECT max(version) AS max_version FROM events \
                   WHERE stream_id LIKE 'customer-%' GROUP BY stream_id) v)::bigint, \
               (SELECT coalesce(sum(stream_version), 0) FROM projection.customer_balances)::bigint",
            &[],
        )
        .await
        .expect("comparing the projection with the events");
    row.get::<_, i64>(0) == row.get::<_, i64>(1)
}

/// A loopback port nobody listens on right now (for a child process to bind).
pub fn free_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// Kills and reaps a child process, if there is one (from a `Drop`: errors are moot there).
pub fn kill_child(child: Option<std::process::Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// WhatsApp: customers chatting through the real ingest, replies read from the outbox
// ---------------------------------------------------------------------------------------

/// The sandbox's shared number, the processor's default.
pub const SHARED_PHONE_NUMBER_ID: &str = "100000000000001";
pub const SHARED_DISPLAY_NUMBER: &str = "15550001234";
pub const WAIT: Duration = Duration::from_secs(20);

/// A queued reply as the notifier will read it.
#[derive(Debug)]
pub struct Reply {
    pub body: Value,
    pub tenant: Option<Uuid>,
}

impl Reply {
    pub fn text(&self) -> &str {
        self.body
            .pointer("/body")
            .or_else(|| self.body.pointer("/text/body"))
            .and_then(Value::as_str)
            .or_else(|| self.body.get("body").and_then(Value::as_str))
            .unwrap_or_default()
    }

    /// Every id the reply offers (buttons and list rows), wherever the JSON keeps them.
    pub fn ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        collect_ids(&self.body, &mut ids);
        ids
    }
}

pub fn collect_ids(value: &Value, ids: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "id" {
                    if let Some(id) = inner.as_str() {
                        ids.push(id.to_owned());
                    }
                }
                collect_ids(inner, ids);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_ids(i, ids)),
        _ => {}
    }
}

/// Customers writing to one business number of `app`.
pub struct Chat<'a> {
    pub app: &'a TestApp,
    pub simulator: Simulator,
}

impl<'a> Chat<'a> {
    pub fn on(app: &'a TestApp, phone_number_id: &str) -> Chat<'a> {
        let business = BusinessNumber {
            phone_number_id: phone_number_id.to_owned(),
            display_phone_number: SHARED_DISPLAY_NUMBER.to_owned(),
            waba_id: "100000000000000".to_owned(),
            access_token: None,
        };
        let simulator = Simulator::new(
            format!("{}/webhooks/whatsapp", app.ingest_address),
            AppSecret::new(WHATSAPP_APP_SECRET.as_str()).unwrap(),
            business,
        )
        .with_profile_name("Ada Lovelace");
        Chat { app, simulator }
    }

    pub fn shared(app: &'a TestApp) -> Chat<'a> {
        Chat::on(app, SHARED_PHONE_NUMBER_ID)
    }

    pub async fn say(&self, from: &str, text: &str) -> whatsapp_sandbox::simulator::Inbound {
        self.simulator
            .say(from, text)
            .await
            .expect("posting a message")
    }

    pub async fn tap(&self, from: &str, id: &str) -> whatsapp_sandbox::simulator::Inbound {
        self.simulator
            .say_button(from, None, id, "Tap")
            .await
            .expect("posting a button reply")
    }

    pub async fn pick(&self, from: &str, id: &str) -> whatsapp_sandbox::simulator::Inbound {
        self.simulator
            .say_list_reply(from, None, id, "Row", None)
            .await
            .expect("posting a list reply")
    }

    /// Waits until `from` has `count` replies, then until the processor is idle, and
    /// returns every reply (in queue order).
    pub async fn replies(&self, from: &str, count: usize) -> Vec<Reply> {
        wait_for(WAIT, &format!("{count} replies"), || async {
            replies_to(self.app, from).await.len() >= count
        })
        .await;
        processed_everything(self.app).await;
        replies_to(self.app, from).await
    }

    /// The latest reply after the `count`-th.
    pub async fn reply(&self, from: &str, count: usize) -> Reply {
        let mut all = self.replies(from, count).await;
        assert_eq!(all.len(), count, "one reply per message: {all:#?}");
        all.pop().unwrap()
    }
}

pub fn wa_id(phone: &str) -> String {
    phone.trim_start_matches('+').to_owned()
}

pub fn digest(phone: &str) -> Vec<u8> {
    test_vault()
        .keyed_digest(CUSTOMER_DIGEST_PURPOSE, wa_id(phone).as_bytes())
        .to_vec()
}

/// Every conversation reply queued for `phone` (not the ledger's notifications), with its
/// sealed recipient opened and checked.
pub async fn replies_to(app: &TestApp, phone: &str) -> Vec<Reply> {
    let db = app.platform_db().await;
    let rows = db
        .query(
            "SELECT dedupe_key, body::text, tenant_id, master_key_id, wrapped_key, \
                    sealed_recipient, kind \
             FROM whatsapp_outbox WHERE customer_digest = $1 AND kind = 'reply' ORDER BY message_id",
            &[&digest(phone)],
        )
        .await
        .unwrap();
    let vault = test_vault();
    rows.iter()
        .map(|row| {
            let dedupe_key: String = row.get(0);
            assert!(dedupe_key.starts_with("reply:msg:"), "{dedupe_key}");
            assert_eq!(row.get::<_, String>(6), "reply");
            let recipient = vault
                .open_record(
                    &outbox_seal_context(&dedupe_key),
                    &SealedRecord {
                        master_key_id: row.get(3),
                        wrapped_key: row.get(4),
                        sealed: row.get(5),
                    },
                )
                .expect("the recipient opens under the outbox context");
            assert_eq!(String::from_utf8(recipient).unwrap(), wa_id(phone));
            Reply {
                body: serde_json::from_str(row.get::<_, &str>(1)).unwrap(),
                tenant: row.get(2),
            }
        })
        .collect()
}

/// Waits until the processor's cursor has passed every inbox row.
pub async fn processed_everything(app: &TestApp) {
    wait_for(WAIT, "the processor to catch up", || async {
        let db = admin_client(&dbname(&app.database_url)).await;
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM whatsapp_inbox), \
                        coalesce((SELECT last_inbox_id FROM whatsapp_inbox_cursors \
                                  WHERE name = 'conversations'), 0), \
                        coalesce((SELECT max(inbox_id) FROM whatsapp_inbox), 0)",
                &[],
            )
            .await
            .unwrap();
        let (rows, cursor, newest): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        rows == 0 || cursor == newest
    })
    .await;
}

pub async fn vendor_code(app: &TestApp, tenant: TenantId) -> String {
    admin_client(&dbname(&app.database_url))
        .await
        .query_one(
            "SELECT vendor_code FROM tenants WHERE tenant_id = $1",
            &[&tenant.as_uuid()],
        )
        .await
        .unwrap()
        .get(0)
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    admin_client(&dbname(&app.database_url))
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// The customer id the processor recorded for `phone` at `tenant`.
pub async fn member(app: &TestApp, tenant: TenantId, phone: &str) -> Option<Uuid> {
    app.platform_db()
        .await
        .query_opt(
            "SELECT customer_id FROM whatsapp_members WHERE tenant_id = $1 AND customer_digest = $2",
            &[&tenant.as_uuid(), &digest(phone)],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

/// A tenant whose owner can manage rewards and log purchases.
pub struct Owner<'a> {
    pub app: &'a TestApp,
    pub tenant: TenantId,
    pub token: String,
}

impl<'a> Owner<'a> {
    pub async fn sign_up(app: &'a TestApp) -> Owner<'a> {
        let (tenant, token) = sign_up_owner(&app.http, &app.address).await;
        Owner { app, tenant, token }
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Value {
        let mut request = self
            .app
            .http
            .post(self.app.url(path))
            .bearer_auth(&self.token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(response.status(), 201, "POST {path}");
        response.json().await.unwrap()
    }

    pub async fn create_reward(&self, name: &str, points_cost: i64) -> Uuid {
        let body = self
            .post(
                "/v1/rewards",
                None,
                json!({ "name": name, "points_cost": points_cost }),
            )
            .await;
        Uuid::parse_str(body["reward_id"].as_str().unwrap()).unwrap()
    }

    pub async fn purchase(&self, customer: Uuid, amount_minor: i64) -> i64 {
        let body = self
            .post(
                "/v1/purchases",
                Some(&format!("buy-{}", Uuid::new_v4())),
                json!({ "customer_id": customer, "amount_minor": amount_minor }),
            )
            .await;
        body["balance"].as_i64().unwrap()
    }
}

/// Runs the `loyalty` binary on the app's database and waits for it.
pub fn loyalty(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the loyalty binary")
}
