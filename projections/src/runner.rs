//! Runs a projection as a durable JetStream pull consumer, effectively once.
//!
//! Each fetched batch is applied in one Postgres transaction together with the projector's
//! checkpoint, and acknowledged only after that transaction commits. A redelivered message
//! is therefore applied again only in the sense of being offered again: the projection's
//! stream-version guard turns it into a no-op. A projection and its rebuild exclude each
//! other with a transaction-level advisory lock named after the projection.

use crate::envelope::EventEnvelope;
use crate::nats::{self, NatsSettings};
use crate::Shutdown;
use async_nats::jetstream::{self, consumer, AckKind};
use deadpool_postgres::Pool;
use futures_util::future::join_all;
use futures_util::StreamExt;
use schema::store::RecordedEvent;
use std::time::Duration;

/// A read model fed from the event stream.
pub trait Projection: Send + Sync {
    /// Durable consumer and checkpoint name.
    fn name(&self) -> &'static str;

    /// Applies events (in stream order) inside `transaction`. Events already applied must be
    /// skipped (guard by stream version); an event whose predecessor is missing is an error.
    fn apply(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        events: &[RecordedEvent],
    ) -> impl std::future::Future<Output = Result<(), ProjectionError>> + Send;

    /// Empties the read model before a rebuild.
    fn reset(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
    ) -> impl std::future::Future<Output = Result<(), ProjectionError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("store: {0}")]
    Store(#[from] schema::StoreError),
    #[error("codec: {0}")]
    Codec(#[from] ledger_core::codec::CodecError),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("stream {stream} jumps from version {applied} to {found}: a predecessor is missing")]
    Gap {
        stream: String,
        applied: i32,
        found: i32,
    },
    #[error("jetstream: {0}")]
    JetStream(String),
    /// A process that submits commands (the referral process) found the writer unavailable.
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub batch_size_max: usize,
    pub fetch_wait: Duration,
    pub retry_delay_max: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            batch_size_max: 500,
            fetch_wait: Duration::from_millis(250),
            retry_delay_max: Duration::from_secs(5),
        }
    }
}

/// Lock key shared by a projection's live batches and its rebuild.
pub fn projection_lock_key(name: &str) -> i64 {
    // FNV-1a: stable across builds and processes, unlike std's randomised hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

pub async fn run<P: Projection>(
    projection: P,
    pool: Pool,
    nats_client: async_nats::Client,
    nats_settings: NatsSettings,
    settings: RunnerSettings,
    mut shutdown: Shutdown,
) {
    let context = jetstream::new(nats_client);
    let mut delay = Duration::from_millis(100);
    let mut stop = shutdown.clone();
    while !*shutdown.borrow() {
        // Stopping may cut a batch short at any await: that is safe, because an uncommitted
        // batch is rolled back and a committed but unacknowledged one is redelivered and
        // skipped by the version guard.
        let consumed = tokio::select! {
            consumed = consume(&projection, &pool, &context, &nats_settings, &settings, &mut shutdown) => consumed,
            _ = crate::stopped(&mut stop) => return,
        };
        match consumed {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(projection = projection.name(), %error, "projector interrupted");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::stopped(&mut shutdown) => return,
                }
                delay = (delay * 2).min(settings.retry_delay_max);
            }
        }
    }
}

async fn consume<P: Projection>(
    projection: &P,
    pool: &Pool,
    context: &jetstream::Context,
    nats_settings: &NatsSettings,
    settings: &RunnerSettings,
    shutdown: &mut Shutdown,
) -> Result<(), ProjectionError> {
    let jetstream_error = |e: &dyn std::fmt::Display| ProjectionError::JetStream(e.to_string());
    let stream = nats::ensure_stream(context, nats_settings)
        .await
        .map_err(|e| jetstream_error(&e))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            projection.name(),
            consumer::pull::Config {
                durable_name: Some(projection.name().to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| jetstream_error(&e))?;
    tracing::info!(projection = projection.name(), "projector consuming");
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut fetched = consumer
            .fetch()
            .max_messages(settings.batch_size_max)
            .expires(settings.fetch_wait)
            .messages()
            .await
            .map_err(|e| jetstream_error(&e))?;
        let mut messages = Vec::new();
        while let Some(message) = fetched.next().await {
            messages.push(message.map_err(|e| jetstream_error(&e))?);
        }
        if messages.is_empty() {
            continue;
        }
        apply_and_ack(projection, pool, messages).await?;
    }
}

async fn apply_and_ack<P: Projection>(
    projection: &P,
    pool: &Pool,
    messages: Vec<jetstream::Message>,
) -> Result<(), ProjectionError> {
    let mut events = Vec::with_capacity(messages.len());
    let mut keep = Vec::with_capacity(messages.len());
    let mut last_sequence = 0u64;
    for message in messages {
        match EventEnvelope::decode(&message.payload).and_then(EventEnvelope::into_recorded) {
            Ok(event) => {
                if let Ok(info) = message.info() {
                    last_sequence = last_sequence.max(info.stream_sequence);
                }
                events.push(event);
                keep.push(message);
            }
            Err(error) => {
                // Only the relay publishes here, so this is not ours or is corrupt: stop
                // redelivering it rather than wedging the projector.
                tracing::error!(projection = projection.name(), %error, "dropping undecodable message");
                let _ = message.ack_with(AckKind::Term).await;
            }
        }
    }
    match apply_batch(projection, pool, &events, last_sequence).await {
        Ok(()) => {
            let acks = join_all(keep.iter().map(|m| m.ack())).await;
            if let Some(Err(error)) = acks.into_iter().find(Result::is_err) {
                // Unacked messages come back after ack_wait and are skipped by the guard.
                tracing::warn!(%error, "ack failed after commit");
            }
            Ok(())
        }
        Err(error) => {
            let delay = AckKind::Nak(Some(Duration::from_secs(1)));
            join_all(keep.iter().map(|m| m.ack_with(delay))).await;
            Err(error)
        }
    }
}

async fn apply_batch<P: Projection>(
    projection: &P,
    pool: &Pool,
    events: &[RecordedEvent],
    last_sequence: u64,
) -> Result<(), ProjectionError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&projection_lock_key(projection.name())],
        )
        .await?;
    projection.apply(&transaction, events).await?;
    let applied = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let sequence = i64::try_from(last_sequence).unwrap_or(i64::MAX);
    transaction
        .execute(
            "INSERT INTO projector_checkpoints (name, last_stream_sequence, applied_total) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET \
                 last_stream_sequence = greatest(projector_checkpoints.last_stream_sequence, $2), \
                 applied_total = projector_checkpoints.applied_total + $3, updated_at = now()",
            &[&projection.name(), &sequence, &applied],
        )
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// Rebuilds a projection from the event table alone, excluding the live projector meanwhile.
/// Returns the number of events read.
///
/// The projection lock is taken as a session lock *before* the transaction starts, so the
/// rebuild's single REPEATABLE READ snapshot sees every event the live projector has
/// applied; events committed after the snapshot are left to the live projector, whose
/// version guard also turns the ones the rebuild did apply into no-ops.
pub async fn rebuild<P: Projection>(projection: &P, pool: &Pool) -> Result<u64, ProjectionError> {
    // A page is folded and written as one batch: each customer (and tenant) row it touches
    // is read and written once per page, so larger pages write far fewer rows on a ledger
    // with many customers (docs/PERFORMANCE.md). 50,000 events hold ~40 MB in memory.
    const PAGE: i64 = 50_000;
    // Out of the pool: if anything fails, dropping the session releases the lock.
    let mut client = deadpool_postgres::Object::take(pool.get().await?);
    let lock_key = projection_lock_key(projection.name());
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock_key])
        .await?;
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    projection.reset(&transaction).await?;
    let mut position = schema::Position::default();
    let mut total = 0u64;
    loop {
        let page = schema::store::read_snapshot_after(&*transaction, position, PAGE).await?;
        let Some(last) = page.last().and_then(|e| e.position) else {
            break;
        };
        projection.apply(&transaction, &page).await?;
        total += page.len() as u64;
        position = last;
    }
    transaction.commit().await?;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
        .await?;
    Ok(total)
}
