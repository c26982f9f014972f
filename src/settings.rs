//! Settings, all from the environment (or the matching `--flag`); documented in
//! `.env.example`. Secrets never appear in `Debug` output.

use clap::Args;
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

    /// How often `loyalty all` runs the expiry of points, in seconds.
    #[arg(
        long,
        env = "LOYALTY_EXPIRY_INTERVAL_SECONDS",
        default_value_t = 3_600,
        global = true
    )]
    pub expiry_interval_seconds: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may carry a password.
        f.debug_struct("Settings")
            .field("database_url", &"<redacted>")
            .field("jwt_keys", &"<redacted>")
            .field("nats_url", &self.nats_url)
            .field("http_addr", &self.http_addr)
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("batch_size_max", &self.batch_size_max)
            .field("batch_wait_max_micros", &self.batch_wait_max_micros)
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
