//! The relay: tails the event table by the safe position and publishes every event to
//! JetStream with `Nats-Msg-Id` = event id.
//!
//! - One active relay at a time: a session-level advisory lock on a dedicated connection.
//!   A second relay waits as a standby and takes over when the first one's session ends.
//! - The cursor advances in Postgres only after JetStream acknowledged every message of the
//!   batch. On any publish error the relay drops the batch and restarts from the persisted
//!   cursor; JetStream's de-duplication by message id absorbs what was already stored, so
//!   each event is on the stream exactly once.
//! - NATS down delays the relay, never the writers: events wait in Postgres.

use crate::envelope::EventEnvelope;
use crate::nats::{self, NatsSettings};
use crate::Shutdown;
use async_nats::jetstream::{self, message::PublishMessage};
use deadpool_postgres::{Object, Pool};
use futures_util::future::try_join_all;
use schema::store::{self, Position, RecordedEvent};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Name of the cursor row; one per stream the ledger is published to.
    pub name: String,
    pub batch_size_max: i64,
    /// How often to look for new events when nobody in this process says there are some.
    pub poll_interval: Duration,
    pub retry_delay_max: Duration,
    /// Pause after a partial batch; bounds the latency the relay adds when idle.
    pub gather_delay: Duration,
}

impl RelaySettings {
    pub fn new(name: impl Into<String>) -> Self {
        RelaySettings {
            name: name.into(),
            batch_size_max: 1_000,
            poll_interval: Duration::from_millis(50),
            retry_delay_max: Duration::from_secs(5),
            gather_delay: Duration::from_millis(10),
        }
    }
}

/// Advisory-lock key of the relay leadership (any fixed number, shared by every relay).
const RELAY_LOCK_KEY: i64 = 7_319_002;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("publish: {0}")]
    Publish(String),
    #[error("envelope: {0}")]
    Envelope(#[from] crate::envelope::EnvelopeError),
}

/// Runs until `shutdown`; survives database and NATS outages by retrying with backoff.
pub async fn run(
    pool: Pool,
    nats_client: async_nats::Client,
    nats_settings: NatsSettings,
    settings: RelaySettings,
    wake: Arc<Notify>,
    mut shutdown: Shutdown,
) {
    let context = jetstream::new(nats_client);
    let mut delay = Duration::from_millis(100);
    let mut stop = shutdown.clone();
    while !*shutdown.borrow() {
        // Stopping may cut a batch short at any await: that is safe, because the cursor
        // moves only after the acks and a re-published event is de-duplicated.
        let led = tokio::select! {
            led = lead(&pool, &context, &nats_settings, &settings, &wake, &mut shutdown) => led,
            _ = crate::stopped(&mut stop) => return,
        };
        match led {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "relay interrupted");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::stopped(&mut shutdown) => return,
                }
                delay = (delay * 2).min(settings.retry_delay_max);
            }
        }
    }
}

/// Becomes the leader (or waits to), then relays until shutdown or an error.
async fn lead(
    pool: &Pool,
    context: &jetstream::Context,
    nats_settings: &NatsSettings,
    settings: &RelaySettings,
    wake: &Notify,
    shutdown: &mut Shutdown,
) -> Result<(), RelayError> {
    // The lock lives as long as this session, so the connection is taken out of the pool:
    // dropping it closes the session and releases the lock, instead of returning a
    // lock-holding connection to other users.
    let session = Object::take(pool.get().await?);
    loop {
        let row = session
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RELAY_LOCK_KEY])
            .await?;
        if row.try_get::<_, bool>(0)? {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::stopped(shutdown) => return Ok(()),
        }
    }
    tracing::info!(relay = %settings.name, "relay is the leader");
    nats::ensure_stream(context, nats_settings)
        .await
        .map_err(|e| RelayError::Publish(e.to_string()))?;
    let mut cursor = load_cursor(&session, &settings.name).await?;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let batch = store::read_after(&*session, cursor, settings.batch_size_max).await?;
        if batch.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(settings.poll_interval) => {}
                _ = crate::stopped(shutdown) => return Ok(()),
            }
            continue;
        }
        publish_all(context, nats_settings, &batch).await?;
        let last = batch.last().and_then(|e| e.position).unwrap_or(cursor);
        save_cursor(&session, &settings.name, last, batch.len()).await?;
        cursor = last;
        if (batch.len() as i64) < settings.batch_size_max {
            // Caught up: let a few commits gather before the next read, so that under load
            // the relay's fixed cost per batch (a read, a cursor commit) is paid per many
            // events rather than per writer commit.
            tokio::select! {
                _ = tokio::time::sleep(settings.gather_delay) => {}
                _ = crate::stopped(shutdown) => return Ok(()),
            }
        }
    }
}

/// Publishes a batch pipelined, then waits for every acknowledgement. JetStream answers a
/// re-published id inside its window with `duplicate: true`, which is success.
async fn publish_all(
    context: &jetstream::Context,
    nats_settings: &NatsSettings,
    batch: &[RecordedEvent],
) -> Result<(), RelayError> {
    let mut acks = Vec::with_capacity(batch.len());
    for event in batch {
        let payload = EventEnvelope::from_recorded(event).encode()?;
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(event.event_id.to_string());
        let ack = context
            .send_publish(
                nats_settings.subject_for(&event.tenant_id.as_uuid()),
                publish,
            )
            .await
            .map_err(|e| RelayError::Publish(e.to_string()))?;
        acks.push(ack.into_future());
    }
    try_join_all(acks)
        .await
        .map_err(|e| RelayError::Publish(e.to_string()))?;
    Ok(())
}

async fn load_cursor(session: &tokio_postgres::Client, name: &str) -> Result<Position, RelayError> {
    session
        .execute(
            "INSERT INTO relay_cursors (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await?;
    let row = session
        .query_one(
            "SELECT last_transaction_id::text, last_global_position FROM relay_cursors WHERE name = $1",
            &[&name],
        )
        .await?;
    let transaction_id: String = row.try_get(0)?;
    Ok(Position {
        transaction_id: transaction_id.parse().unwrap_or(0),
        global_position: row.try_get(1)?,
    })
}

async fn save_cursor(
    session: &tokio_postgres::Client,
    name: &str,
    position: Position,
    published: usize,
) -> Result<(), RelayError> {
    let published = i64::try_from(published).unwrap_or(i64::MAX);
    session
        .execute(
            "UPDATE relay_cursors SET last_transaction_id = $2::text::xid8, \
                 last_global_position = $3, published_total = published_total + $4, \
                 updated_at = now() \
             WHERE name = $1",
            &[
                &name,
                &position.transaction_id.to_string(),
                &position.global_position,
                &published,
            ],
        )
        .await?;
    Ok(())
}
