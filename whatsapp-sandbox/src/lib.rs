//! The WhatsApp sandbox: a real HTTP server that answers `POST /{version}/{phone_number_id}/messages`
//! like Meta's Cloud API, then posts signed status webhooks (`sent`, `delivered`, `read`) to the
//! ingest URL; and a customer simulator that posts signed inbound webhooks the way Meta does.
//! docs/WHATSAPP.md (`## Sandbox`) describes what it emulates and what it does not.
//!
//! Reading order: [`validate`] (the send rules, pure), [`meta_error`] (Meta's error bodies),
//! [`record`] (what the sandbox remembers: sends, faults, the 24-hour window), `server` (the
//! routes), `statuses` (the status webhooks), [`simulator`] (the customer side).
//!
//! Architecture invariant: no database, no NATS, nothing of the product's domain; it knows
//! only Meta's wire contract, so pointing the notifier at Meta instead is a change of base
//! URL, token and app secret.

pub mod meta_error;
pub mod record;
pub mod simulator;
pub mod validate;

mod ids;
mod server;
mod statuses;

use std::net::TcpListener;
use std::time::Duration;

pub use actix_web::dev::Server;
pub use meta_error::MetaError;
pub use record::{
    After, FaultSpec, MessageFilter, Outcome, RecordedMessage, StatusRecord, WebhookDelivery,
};
use serde::{Deserialize, Serialize};
pub use simulator::{say, wait_for_replies, Simulator, SimulatorError};
pub use webhook_ingest::signature::AppSecret;

/// A business phone number the sandbox sends from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessNumber {
    /// The Graph id in the send URL and in webhooks' `metadata.phone_number_id`.
    pub phone_number_id: String,
    /// The number itself, digits only (webhooks' `metadata.display_phone_number`).
    pub display_phone_number: String,
    /// The WhatsApp Business Account id (webhooks' `entry[].id`).
    pub waba_id: String,
    /// The only bearer token accepted for this number; `None` accepts any non-empty token.
    pub access_token: Option<String>,
}

/// In which order the statuses of a sent message reach the ingest URL. Their timestamps are
/// always sent ≤ delivered ≤ read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusOrder {
    /// `sent`, `delivered`, `read`.
    #[default]
    InOrder,
    /// `sent`, `read`, `delivered`: Meta does not guarantee order (reference §4).
    ReadBeforeDelivered,
    /// `sent` and `delivered` only (the customer never opens the chat).
    Unread,
}

/// What can be changed while the sandbox runs (`PUT /sandbox/options`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxOptions {
    /// Refuse a non-template send with 131047 unless the recipient wrote in within 24 h.
    pub enforce_window: bool,
    pub status_order: StatusOrder,
    /// Pause before each status webhook of a message.
    pub status_delay_ms: u64,
}

pub const STATUS_DELAY_MS_MAX: u64 = 60_000;

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            enforce_window: false,
            status_order: StatusOrder::InOrder,
            status_delay_ms: 50,
        }
    }
}

/// Everything the sandbox needs; [`SandboxConfig::new`] fills the defaults.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Signs the status webhooks (`X-Hub-Signature-256`), as Meta signs with the app secret.
    pub app_secret: AppSecret,
    /// Where status webhooks go (the ingest endpoint); `None`: statuses are only recorded.
    pub webhook_url: Option<String>,
    /// The numbers that may send; a send from any other id gets Graph's "object does not
    /// exist" error (code 100, subcode 33).
    pub numbers: Vec<BusinessNumber>,
    pub options: SandboxOptions,
    /// Tries per status webhook before it is marked failed (Meta retries for days).
    pub webhook_attempts_max: u32,
    /// Wait before the second try; doubles each try.
    pub webhook_backoff_initial: Duration,
    /// Per webhook POST.
    pub webhook_timeout: Duration,
    /// Recorded sends kept; the oldest are dropped beyond it.
    pub recorded_messages_max: usize,
    pub workers: usize,
}

impl SandboxConfig {
    pub fn new(
        app_secret: AppSecret,
        webhook_url: Option<String>,
        numbers: Vec<BusinessNumber>,
    ) -> Self {
        Self {
            app_secret,
            webhook_url,
            numbers,
            options: SandboxOptions::default(),
            webhook_attempts_max: 5,
            webhook_backoff_initial: Duration::from_millis(200),
            webhook_timeout: Duration::from_secs(5),
            recorded_messages_max: 100_000,
            workers: 1,
        }
    }
}

/// Starts the sandbox on `listener`. Like `ledger_api::serve`: the caller awaits or spawns the
/// returned server (inside a tokio runtime) and stops it with its handle.
pub fn serve(listener: TcpListener, config: SandboxConfig) -> std::io::Result<Server> {
    server::serve(listener, config)
}
