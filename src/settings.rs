//! Settings, all from the environment (or the matching `--flag`); documented in
//! `.env.example`. Secrets never appear in `Debug` output.

use clap::Args;
use ledger_api::cors::CorsOrigin;
use ledger_api::edge::EdgeConfig;
use ledger_api::rate_limit::{InvalidQuota, Quota};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

#[derive(Args, Clone)]
#[command(next_help_heading = "Settings (each also read from the environment variable shown)")]
pub struct Settings {
    /// PostgreSQL connection URL. When unset, built from PGHOST, PGPORT, PGUSER and
    /// PGDATABASE (defaults 127.0.0.1, 5432, postgres, loyalty).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// NATS server with JetStream.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(
        long,
        env = "LOYALTY_HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: String,

    /// HTTP worker threads (default: number of cores).
    #[arg(long, env = "LOYALTY_HTTP_WORKERS", global = true)]
    pub http_workers: Option<usize>,

    /// JetStream stream the relay publishes to.
    #[arg(
        long,
        env = "LOYALTY_NATS_STREAM",
        default_value = "LOYALTY_EVENTS",
        global = true
    )]
    pub nats_stream: String,

    /// Subject prefix: events go to `<prefix>.<tenant_id>`.
    #[arg(
        long,
        env = "LOYALTY_NATS_SUBJECT_PREFIX",
        default_value = "loyalty.events",
        global = true
    )]
    pub nats_subject_prefix: String,

    /// Connections per database pool.
    #[arg(
        long,
        env = "LOYALTY_DB_POOL_SIZE",
        default_value_t = 16,
        global = true
    )]
    pub db_pool_size: usize,

    /// Connection URL of the API and writer (role `loyalty_app`). When unset, DATABASE_URL
    /// with its user replaced by `loyalty_app`.
    #[arg(
        long,
        env = "LOYALTY_APP_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub app_database_url: Option<String>,

    /// Connection URL of the relay, projectors and expiry scan (role `loyalty_platform`).
    /// When unset, DATABASE_URL with its user replaced by `loyalty_platform`.
    #[arg(
        long,
        env = "LOYALTY_PLATFORM_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub platform_database_url: Option<String>,

    /// Group commit: most commands in one transaction.
    #[arg(
        long,
        env = "LOYALTY_BATCH_SIZE_MAX",
        default_value_t = 256,
        global = true
    )]
    pub batch_size_max: usize,

    /// Group commit: longest wait for a batch to fill, in microseconds.
    #[arg(
        long,
        env = "LOYALTY_BATCH_WAIT_MAX_MICROS",
        default_value_t = 1_000,
        global = true
    )]
    pub batch_wait_max_micros: u64,

    /// Largest request body accepted, in bytes.
    #[arg(
        long,
        env = "LOYALTY_BODY_BYTES_MAX",
        default_value_t = 65_536,
        global = true
    )]
    pub body_bytes_max: usize,

    /// Master keys that wrap customers' data keys: `id:base64-32-bytes`, comma-separated. The
    /// first wraps new keys; all unwrap (rotation: prepend a new key, run
    /// `loyalty keys rewrap`, then drop the old one).
    #[arg(
        long,
        env = "LOYALTY_MASTER_KEYS",
        global = true,
        hide_env_values = true
    )]
    pub master_keys: Option<String>,

    /// Key of the phone numbers' blind index (HMAC-SHA256), base64 of 32 bytes.
    #[arg(
        long,
        env = "LOYALTY_BLIND_INDEX_KEY",
        global = true,
        hide_env_values = true
    )]
    pub blind_index_key: Option<String>,

    /// Keys of the access tokens (JWT, HS256): `kid:base64key[,kid:base64key...]`, each key
    /// at least 32 bytes. The first signs, all verify. Required to run the API.
    #[arg(long, env = "LOYALTY_JWT_KEYS", global = true, hide_env_values = true)]
    pub jwt_keys: Option<String>,

    /// How long API keys and user statuses are cached, in seconds (1 to 60): the longest a
    /// revoked key or a disabled user's access token keeps working.
    #[arg(
        long,
        env = "LOYALTY_AUTH_CACHE_TTL_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub auth_cache_ttl_seconds: u64,

    /// The platform's Ed25519 audit key (32 random bytes, base64): signs tenants' chain
    /// heads. Optional: without it nothing is signed.
    #[arg(
        long,
        env = "LOYALTY_AUDIT_SIGNING_KEY",
        global = true,
        hide_env_values = true
    )]
    pub audit_signing_key: Option<String>,

    /// How often `loyalty all` signs the chain heads that grew, in seconds.
    #[arg(
        long,
        env = "LOYALTY_AUDIT_SIGN_INTERVAL_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub audit_sign_interval_seconds: u64,

    /// How often `loyalty all` runs the expiry of points, in seconds.
    #[arg(
        long,
        env = "LOYALTY_EXPIRY_INTERVAL_SECONDS",
        default_value_t = 3_600,
        global = true
    )]
    pub expiry_interval_seconds: u64,

    /// Days before a lot expires that its one WhatsApp reminder is queued.
    #[arg(
        long,
        env = "LOYALTY_EXPIRY_REMINDER_DAYS",
        default_value_t = 7,
        global = true
    )]
    pub expiry_reminder_days: u32,

    /// How often the WhatsApp analytics are recomputed (`loyalty all`, `loyalty project
    /// analytics`), in seconds.
    #[arg(
        long,
        env = "LOYALTY_ANALYTICS_WHATSAPP_INTERVAL_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub analytics_whatsapp_interval_seconds: u64,

    /// Local days each WhatsApp analytics refresh recomputes (today and the days before);
    /// older days change only with `loyalty project rebuild analytics-whatsapp`.
    #[arg(
        long,
        env = "LOYALTY_ANALYTICS_WHATSAPP_WINDOW_DAYS",
        default_value_t = 3,
        global = true
    )]
    pub analytics_whatsapp_window_days: u32,

    /// How often `loyalty all` looks for lots to remind, in seconds.
    #[arg(
        long,
        env = "LOYALTY_EXPIRY_REMINDER_INTERVAL_SECONDS",
        default_value_t = 3_600,
        global = true
    )]
    pub expiry_reminder_interval_seconds: u64,

    /// Ledger events older than this are not notified (a new or long-stopped notifications
    /// projector must not send old receipts), in minutes.
    #[arg(
        long,
        env = "LOYALTY_NOTIFICATION_AGE_MAX_MINUTES",
        default_value_t = 1_440,
        global = true
    )]
    pub notification_age_max_minutes: i64,

    /// How often the broadcast feeder moves recipients of running broadcasts into the
    /// WhatsApp outbox, in milliseconds.
    #[arg(
        long,
        env = "LOYALTY_BROADCAST_INTERVAL_MS",
        default_value_t = 1_000,
        global = true
    )]
    pub broadcast_interval_ms: u64,

    /// Recipients of one broadcast the feeder queues per run, at most.
    #[arg(
        long,
        env = "LOYALTY_BROADCAST_CHUNK_MAX",
        default_value_t = 200,
        global = true
    )]
    pub broadcast_chunk_max: i64,

    /// A tenant's broadcast messages waiting in the outbox (not yet sent), at most: the
    /// feeder tops up to this, so a pause has little to withdraw.
    #[arg(
        long,
        env = "LOYALTY_BROADCAST_TENANT_UNSENT_MAX",
        default_value_t = 200,
        global = true
    )]
    pub broadcast_tenant_unsent_max: i64,

    /// Address the WhatsApp webhook ingest listens on (port 0 picks a free port).
    #[arg(
        long,
        env = "LOYALTY_INGEST_ADDR",
        default_value = "127.0.0.1:8081",
        global = true
    )]
    pub ingest_addr: String,

    /// The Meta app secret: webhook bodies must carry its HMAC-SHA256 in
    /// X-Hub-Signature-256. Required to run the ingest.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_APP_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub whatsapp_app_secret: Option<String>,

    /// The verify token typed in the App Dashboard for the webhook's GET handshake. Unset:
    /// every handshake is refused (403).
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_VERIFY_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub whatsapp_verify_token: Option<String>,

    /// Largest webhook body accepted, in bytes (at least 3 MiB: Meta sends up to 3 MB).
    #[arg(
        long,
        env = "LOYALTY_INGEST_BODY_BYTES_MAX",
        default_value_t = webhook_ingest::server::BODY_BYTES_MAX_DEFAULT,
        global = true
    )]
    pub ingest_body_bytes_max: usize,

    /// Committer tasks of the ingest's group commit, each with its own database connection
    /// (docs/WHATSAPP.md, `### Group commit`).
    #[arg(
        long,
        env = "LOYALTY_INGEST_COMMITTERS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=64),
        global = true
    )]
    pub ingest_committers: u16,

    /// The platform's shared WhatsApp number (`metadata.phone_number_id`), on which customers
    /// join vendors by code; registered in `whatsapp_numbers` when the conversation
    /// processor starts. Default: the sandbox's shared number.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_SHARED_PHONE_NUMBER_ID",
        default_value = "100000000000001",
        global = true
    )]
    pub whatsapp_shared_phone_number_id: String,

    /// The shared number's digits, as webhooks show them (`display_phone_number`).
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_SHARED_DISPLAY_NUMBER",
        default_value = "15550001234",
        global = true
    )]
    pub whatsapp_shared_display_number: String,

    /// Minutes of silence after which a conversation's menu position (browsing rewards,
    /// confirming one) is forgotten; joined vendors and the opt-in are kept.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_INACTIVITY_TIMEOUT_MINUTES",
        default_value_t = ledger_core::conversation::INACTIVITY_TIMEOUT_DEFAULT_MINUTES,
        value_parser = clap::value_parser!(i64).range(1..=10_080),
        global = true
    )]
    pub whatsapp_inactivity_timeout_minutes: i64,

    /// The conversation processor's fallback poll of the inbox (ms). It is woken by
    /// LISTEN/NOTIFY when rows are committed; the poll only covers a lost notification.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_PROCESSOR_POLL_MS",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub whatsapp_processor_poll_ms: u64,

    /// Inbox messages the conversation processor reads and commits as one batch.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_PROCESSOR_BATCH_MAX",
        default_value_t = 100,
        value_parser = clap::value_parser!(i64).range(1..=10_000),
        global = true
    )]
    pub whatsapp_processor_batch_max: i64,

    /// Rate limits, trusted proxies and CORS origins of the HTTP API.
    #[command(flatten)]
    pub edge: EdgeSettings,

    /// The WhatsApp notifier: where the Cloud API is, its token, retries and limits.
    #[command(flatten)]
    pub notifier: NotifierSettings,
}

/// The WhatsApp notifier (`loyalty notify`, inside `loyalty all`). Pointing it at Meta is a
/// change of base URL and token; the defaults are the sandbox's.
#[derive(Args, Clone)]
pub struct NotifierSettings {
    /// The Cloud API's base URL: the sandbox by default, `https://graph.facebook.com` for Meta.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_API_BASE_URL",
        default_value = "http://127.0.0.1:8090",
        global = true
    )]
    pub whatsapp_api_base_url: String,

    /// The Graph API version in the send URL.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_API_VERSION",
        default_value = "v24.0",
        global = true
    )]
    pub whatsapp_api_version: String,

    /// The Cloud API access token (a system user's token). Required to run the notifier.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_ACCESS_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub whatsapp_access_token: Option<String>,

    /// Longest wait for one send's answer, in milliseconds.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_SEND_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=120_000),
        global = true
    )]
    pub whatsapp_send_timeout_ms: u64,

    /// Sends per second per business phone number (Meta's default throughput: 80).
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_NUMBER_SENDS_PER_SECOND",
        default_value_t = 80,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        global = true
    )]
    pub whatsapp_number_sends_per_second: u32,

    /// Least time between two messages to one recipient, in milliseconds.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_RECIPIENT_INTERVAL_MS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(0..=60_000),
        global = true
    )]
    pub whatsapp_recipient_interval_ms: u64,

    /// The first retry's wait, in milliseconds (doubled each retry, with jitter).
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_RETRY_BASE_MS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(1..=60_000),
        global = true
    )]
    pub whatsapp_retry_base_ms: u64,

    /// The longest wait between two tries, in milliseconds.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_RETRY_CAP_MS",
        default_value_t = 300_000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000),
        global = true
    )]
    pub whatsapp_retry_cap_ms: u64,

    /// Tries per message, the first included, before it is `failed`.
    #[arg(
        long,
        env = "LOYALTY_WHATSAPP_SEND_ATTEMPTS_MAX",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=100),
        global = true
    )]
    pub whatsapp_send_attempts_max: u32,

    /// How often an idle notifier looks for due messages and new statuses, in milliseconds.
    #[arg(
        long,
        env = "LOYALTY_NOTIFIER_POLL_MS",
        default_value_t = 250,
        value_parser = clap::value_parser!(u64).range(10..=60_000),
        global = true
    )]
    pub notifier_poll_ms: u64,
}

impl std::fmt::Debug for NotifierSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierSettings")
            .field("whatsapp_api_base_url", &self.whatsapp_api_base_url)
            .field("whatsapp_api_version", &self.whatsapp_api_version)
            .field("whatsapp_access_token", &"<redacted>")
            .field("whatsapp_send_timeout_ms", &self.whatsapp_send_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl NotifierSettings {
    /// The notifier's configuration; refuses a missing or empty access token.
    pub fn config(&self) -> anyhow::Result<whatsapp_notifier::NotifierConfig> {
        let access_token = whatsapp_notifier::AccessToken::parse(
            self.whatsapp_access_token.as_deref().unwrap_or(""),
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "LOYALTY_WHATSAPP_ACCESS_TOKEN is not set: the WhatsApp notifier needs the \
                 Cloud API token (any non-empty value for the sandbox)"
            )
        })?;
        let mut config = whatsapp_notifier::NotifierConfig::new(whatsapp_notifier::MetaSettings {
            base_url: self.whatsapp_api_base_url.trim_end_matches('/').to_owned(),
            api_version: self.whatsapp_api_version.clone(),
            access_token,
            send_timeout: Duration::from_millis(self.whatsapp_send_timeout_ms),
        });
        config.number_sends_per_second_max = self.whatsapp_number_sends_per_second;
        config.recipient_interval = Duration::from_millis(self.whatsapp_recipient_interval_ms);
        config.backoff = whatsapp_notifier::retry::Backoff {
            base: Duration::from_millis(self.whatsapp_retry_base_ms),
            cap: Duration::from_millis(self.whatsapp_retry_cap_ms.max(self.whatsapp_retry_base_ms)),
            attempts_max: self.whatsapp_send_attempts_max,
        };
        config.poll_interval = Duration::from_millis(self.notifier_poll_ms);
        Ok(config)
    }
}

/// The HTTP API's edge: rate limits (per process), the proxies whose `X-Forwarded-For` is
/// believed, and the origins allowed to call the API from a browser.
#[derive(Args, Clone, Debug)]
pub struct EdgeSettings {
    /// Requests per second allowed from one client IP (every path but /health and /ready).
    #[arg(
        long,
        env = "LOYALTY_RATE_LIMIT_IP_PER_SECOND",
        default_value_t = ledger_api::edge::CLIENT_IP_QUOTA_DEFAULT.per_second(),
        value_parser = clap::value_parser!(u32).range(1..=1_000_000_000),
        global = true
    )]
    pub rate_limit_ip_per_second: u32,

    /// Requests one client IP may make at once before the per-second rate applies.
    #[arg(
        long,
        env = "LOYALTY_RATE_LIMIT_IP_BURST",
        default_value_t = ledger_api::edge::CLIENT_IP_QUOTA_DEFAULT.burst(),
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub rate_limit_ip_burst: u32,

    /// Requests per second allowed for one API key (after authentication).
    #[arg(
        long,
        env = "LOYALTY_RATE_LIMIT_PRINCIPAL_PER_SECOND",
        default_value_t = ledger_api::edge::PRINCIPAL_QUOTA_DEFAULT.per_second(),
        value_parser = clap::value_parser!(u32).range(1..=1_000_000_000),
        global = true
    )]
    pub rate_limit_principal_per_second: u32,

    /// Requests one API key may make at once before the per-second rate applies.
    #[arg(
        long,
        env = "LOYALTY_RATE_LIMIT_PRINCIPAL_BURST",
        default_value_t = ledger_api::edge::PRINCIPAL_QUOTA_DEFAULT.burst(),
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub rate_limit_principal_burst: u32,

    /// Comma-separated proxy addresses whose X-Forwarded-For names the client (default: none).
    #[arg(
        long,
        env = "LOYALTY_TRUSTED_PROXIES",
        default_value = "",
        hide_default_value = true,
        value_parser = parse_comma_list::<IpAddr>,
        global = true
    )]
    pub trusted_proxies: CommaList<IpAddr>,

    /// Comma-separated origins allowed to call the API from a browser, e.g.
    /// https://dashboard.example.com (default: none, no CORS).
    #[arg(
        long,
        env = "LOYALTY_CORS_ORIGINS",
        default_value = "",
        hide_default_value = true,
        value_parser = parse_comma_list::<CorsOrigin>,
        global = true
    )]
    pub cors_origins: CommaList<CorsOrigin>,
}

impl EdgeSettings {
    pub fn config(&self) -> Result<EdgeConfig, InvalidQuota> {
        Ok(EdgeConfig {
            client_ip_quota: Quota::new(self.rate_limit_ip_per_second, self.rate_limit_ip_burst)?,
            principal_quota: Quota::new(
                self.rate_limit_principal_per_second,
                self.rate_limit_principal_burst,
            )?,
            trusted_proxies: self.trusted_proxies.0.clone(),
            cors_origins: self.cors_origins.0.clone(),
        })
    }
}

/// A setting holding a comma-separated list. Blank items are skipped, so an empty value
/// (`LOYALTY_CORS_ORIGINS=` in a `.env`) is the empty list, like leaving the variable unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommaList<T>(pub Vec<T>);

// By hand: the derive would require `T: Default`, which an empty list does not need.
impl<T> Default for CommaList<T> {
    fn default() -> Self {
        CommaList(Vec::new())
    }
}

fn parse_comma_list<T>(raw: &str) -> Result<CommaList<T>, String>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| item.parse().map_err(|e| format!("`{item}`: {e}")))
        .collect::<Result<Vec<T>, String>>()
        .map(CommaList)
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may carry a password.
        f.debug_struct("Settings")
            .field("database_url", &"<redacted>")
            .field("jwt_keys", &"<redacted>")
            .field("audit_signing_key", &"<redacted>")
            .field("whatsapp_app_secret", &"<redacted>")
            .field("ingest_addr", &self.ingest_addr)
            .field("nats_url", &self.nats_url)
            .field("http_addr", &self.http_addr)
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("batch_size_max", &self.batch_size_max)
            .field("batch_wait_max_micros", &self.batch_wait_max_micros)
            .field("edge", &self.edge)
            .field("notifier", &self.notifier)
            .field("expiry_reminder_days", &self.expiry_reminder_days)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn database_url(&self) -> String {
        if let Some(url) = &self.database_url {
            return url.clone();
        }
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        format!(
            "host={} port={} user={} dbname={}",
            var("PGHOST", "127.0.0.1"),
            var("PGPORT", "5432"),
            var("PGUSER", "postgres"),
            var("PGDATABASE", "loyalty"),
        )
    }

    /// The pool of tenant-facing components: the API and the group-commit writer.
    pub fn app_db(&self) -> schema::DbSettings {
        self.role_db(&self.app_database_url, schema::db::APP_ROLE)
    }

    /// The pool of cross-tenant platform components: relay, projectors, expiry scan.
    pub fn platform_db(&self) -> schema::DbSettings {
        self.role_db(&self.platform_database_url, schema::db::PLATFORM_ROLE)
    }

    fn role_db(&self, own_url: &Option<String>, role: &str) -> schema::DbSettings {
        match own_url {
            Some(url) => schema::DbSettings {
                url: url.clone(),
                pool_size_max: self.db_pool_size.max(1),
                login_role: None,
            },
            None => schema::DbSettings {
                url: self.database_url(),
                pool_size_max: self.db_pool_size.max(1),
                login_role: Some(role.to_owned()),
            },
        }
    }

    /// The vault of personal-data keys; refuses to build without both keys, so the API never
    /// runs with personal data it could not protect.
    /// The audit signing key, when one is configured.
    pub fn audit_signing_key(&self) -> anyhow::Result<Option<vault::audit::AuditSigningKey>> {
        self.audit_signing_key
            .as_deref()
            .filter(|key| !key.trim().is_empty())
            .map(|key| {
                vault::audit::AuditSigningKey::parse(key)
                    .map_err(|error| anyhow::anyhow!("LOYALTY_AUDIT_SIGNING_KEY: {error}"))
            })
            .transpose()
    }

    pub fn vault(&self) -> anyhow::Result<vault::Vault> {
        let master_keys = self.master_keys.as_deref().unwrap_or_default();
        let blind_index_key = self.blind_index_key.as_deref().unwrap_or_default();
        vault::Vault::from_config(master_keys, blind_index_key).map_err(|error| {
            anyhow::anyhow!(
                "personal-data keys: {error} (set LOYALTY_MASTER_KEYS and \
                 LOYALTY_BLIND_INDEX_KEY; `loyalty keys generate` prints fresh ones)"
            )
        })
    }

    /// The API's accounts configuration; refuses a missing or short JWT key.
    pub fn accounts(
        &self,
    ) -> Result<ledger_api::accounts::AccountsConfig, ledger_api::jwt::JwtKeyError> {
        let jwt_keys = ledger_api::jwt::JwtKeys::parse(self.jwt_keys.as_deref().unwrap_or(""))?;
        Ok(ledger_api::accounts::AccountsConfig {
            jwt_keys,
            auth_cache_ttl: Duration::from_secs(self.auth_cache_ttl_seconds.clamp(1, 60)),
            login_limiter: Default::default(),
        })
    }

    /// The webhook ingest's configuration; refuses a missing or empty app secret (every
    /// body would be refused, or worse, anyone could sign) and a body limit below Meta's.
    pub fn ingest(&self) -> anyhow::Result<webhook_ingest::IngestConfig> {
        let app_secret = webhook_ingest::signature::AppSecret::new(
            self.whatsapp_app_secret.as_deref().unwrap_or(""),
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "LOYALTY_WHATSAPP_APP_SECRET is not set: the WhatsApp webhook ingest \
                         needs the Meta app secret to check signatures"
            )
        })?;
        anyhow::ensure!(
            self.ingest_body_bytes_max >= webhook_ingest::server::BODY_BYTES_MAX_MIN,
            "LOYALTY_INGEST_BODY_BYTES_MAX must be at least {} (Meta sends bodies up to 3 MB)",
            webhook_ingest::server::BODY_BYTES_MAX_MIN
        );
        Ok(webhook_ingest::IngestConfig {
            app_secret,
            verify_token: webhook_ingest::VerifyToken::new(
                self.whatsapp_verify_token.clone().unwrap_or_default(),
            ),
            body_bytes_max: self.ingest_body_bytes_max,
            commit: webhook_ingest::commit::CommitConfig {
                committers: usize::from(self.ingest_committers),
                ..Default::default()
            },
        })
    }

    /// The conversation processor's settings.
    pub fn conversations(&self) -> crate::conversations::ProcessorSettings {
        let mut settings = crate::conversations::ProcessorSettings::new(
            self.whatsapp_shared_phone_number_id.trim().to_owned(),
            self.whatsapp_shared_display_number
                .trim()
                .trim_start_matches('+')
                .to_owned(),
        );
        settings.inactivity_timeout =
            chrono::Duration::minutes(self.whatsapp_inactivity_timeout_minutes);
        settings.poll_interval = Duration::from_millis(self.whatsapp_processor_poll_ms.max(1));
        settings.batch_size_max = self.whatsapp_processor_batch_max.max(1);
        settings
    }

    /// The WhatsApp analytics refresher's settings.
    pub fn whatsapp_analytics(&self) -> projections::whatsapp_analytics::RefreshSettings {
        projections::whatsapp_analytics::RefreshSettings {
            interval: Duration::from_secs(self.analytics_whatsapp_interval_seconds.max(1)),
            window_days: self.analytics_whatsapp_window_days,
        }
    }

    /// The expiry-reminder job's settings.
    pub fn reminders(&self) -> crate::notifications::reminders::ReminderSettings {
        crate::notifications::reminders::ReminderSettings {
            days_ahead: self.expiry_reminder_days,
            interval: Duration::from_secs(self.expiry_reminder_interval_seconds.max(1)),
        }
    }

    /// The broadcast feeder's settings.
    pub fn broadcasts(&self) -> crate::broadcasts::FeederSettings {
        crate::broadcasts::FeederSettings {
            interval: Duration::from_millis(self.broadcast_interval_ms.max(10)),
            chunk_max: self.broadcast_chunk_max.max(1),
            tenant_unsent_max: self.broadcast_tenant_unsent_max.max(1),
            ..crate::broadcasts::FeederSettings::default()
        }
    }

    /// The notifications projector, sealing with `vault`.
    pub fn notifications(
        &self,
        vault: std::sync::Arc<vault::Vault>,
    ) -> crate::notifications::Notifications {
        let mut projection = crate::notifications::Notifications::new(vault);
        projection.age_max = chrono::Duration::minutes(self.notification_age_max_minutes.max(0));
        projection
    }

    pub fn nats(&self) -> projections::nats::NatsSettings {
        projections::nats::NatsSettings {
            url: self.nats_url.clone(),
            stream_name: self.nats_stream.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
        }
    }

    pub fn writer(&self) -> schema::WriterConfig {
        schema::WriterConfig {
            batch_size_max: self.batch_size_max.clamp(1, 10_000),
            batch_wait_max: Duration::from_micros(self.batch_wait_max_micros.min(1_000_000)),
            queue_capacity: 16_384,
            cached_streams_max: 200_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_lists_skip_blank_items_and_name_the_bad_one() {
        let parsed = parse_comma_list::<IpAddr>(" 10.0.0.1,, fe80::1 ,").unwrap();
        let expected: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fe80::1".parse().unwrap()];
        assert_eq!(parsed, CommaList(expected));
        assert_eq!(parse_comma_list::<IpAddr>(""), Ok(CommaList(Vec::new())));
        let error = parse_comma_list::<CorsOrigin>("https://a.example.com, https://b.example.com/")
            .unwrap_err();
        assert!(error.starts_with("`https://b.example.com/`"), "{error}");
    }
}
