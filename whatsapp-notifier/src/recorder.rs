//! Group commit for the notifier's `sent` records: the outcome of every send Meta accepted
//! goes through one queue, and a recorder task writes whatever is queued with one
//! statement and one commit ([`crate::outbox::record_sent_many`]) before answering each
//! send.
//!
//! Why: a commit per accepted send (500/s at the benchmark's rate) held a pooled connection
//! each through a WAL flush; under load the flushes queued behind one another and the
//! pool's 16 connections, not Meta or the CPU, bounded the sends (about 300/s).
//!
//! The durability rule is unchanged: a send's task learns its record committed before it
//! ends, so the window for a double send after a crash stays "accepted by Meta, not yet
//! recorded" (docs/WHATSAPP.md), now as wide as one batch's commit.

use crate::outbox;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Records per statement at most.
const BATCH_MAX: usize = 256;
/// Queued records before a send waits to queue its own (backpressure).
const QUEUE_MAX: usize = 1_024;
/// Longest a recorder works on one batch (connection included) before failing it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(15);

/// One accepted send to record.
pub struct SentRecord {
    pub message_id: Uuid,
    pub wamid_digest: [u8; 32],
    pub detail: &'static str,
}

type Reply = oneshot::Sender<Result<(), String>>;

/// The queue's sending side; cheap to clone. The recorders stop once every clone is dropped,
/// after recording what was queued.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<(SentRecord, Reply)>,
}

impl Recorder {
    /// Starts `recorders` tasks (two: while one waits for its flush, the other gathers the
    /// next batch) on the current runtime.
    pub fn spawn(pool: schema::Pool, recorders: usize) -> Recorder {
        let (queue, receiver) = mpsc::channel(QUEUE_MAX);
        let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..recorders.max(1) {
            let pool = pool.clone();
            let receiver = receiver.clone();
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut receiver = receiver.lock().await;
                        let Some(first) = receiver.recv().await else {
                            return;
                        };
                        batch.push(first);
                        while batch.len() < BATCH_MAX {
                            match receiver.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                    }
                    let result = tokio::time::timeout(BATCH_TIMEOUT, record(&pool, &batch))
                        .await
                        .unwrap_or_else(|_| Err("recording timed out".to_owned()));
                    for (_, reply) in batch {
                        let _ = reply.send(result.clone());
                    }
                }
            });
        }
        Recorder { queue }
    }

    /// Records `sent` and returns once it is committed (or failed with the reason).
    pub async fn record(&self, sent: SentRecord) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((sent, reply))
            .await
            .map_err(|_| "the recorder stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the recorder stopped".to_owned())?
    }
}

async fn record(pool: &schema::Pool, batch: &[(SentRecord, Reply)]) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let records: Vec<&SentRecord> = batch.iter().map(|(record, _)| record).collect();
    outbox::record_sent_many(&client, &records)
        .await
        .map_err(|e| schema::db::error_text(&e))
}
