//! Connecting to NATS and the JetStream stream the ledger is published to.

use async_nats::jetstream::{self, stream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub url: String,
    /// JetStream stream name, e.g. `LOYALTY_EVENTS`.
    pub stream_name: String,
    /// Subjects are `<prefix>.<tenant_id>`; the stream holds `<prefix>.>`.
    pub subject_prefix: String,
}

impl NatsSettings {
    pub fn subject_for(&self, tenant_id: &uuid::Uuid) -> String {
        format!("{}.{}", self.subject_prefix, tenant_id)
    }
}

/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-publish. Comfortably above any
/// relay restart; correctness does not depend on it because projectors are idempotent.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(20 * 60);

/// How long the stream keeps events. Projections rebuild from the event table, so the
/// stream need not keep history forever.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Connects without waiting for the server: the client reconnects in the background, so
/// the API and the writer start and work while NATS is down.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name("loyalty-ledger")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
}

pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

pub async fn ensure_stream(
    context: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    context
        .get_or_create_stream(stream::Config {
            name: settings.stream_name.clone(),
            subjects: vec![format!("{}.>", settings.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            max_age: STREAM_MAX_AGE,
            ..Default::default()
        })
        .await
}
