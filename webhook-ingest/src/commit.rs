//! Group commit for the ingest: the items of many concurrent webhooks appended with one
//! statement, in one transaction, with one commit (one WAL flush) for all of them.
//!
//! A request that has verified and sealed its body sends `(items, reply)` into a bounded
//! queue ([`CommitQueue::submit`]) and waits for the reply. A few committer tasks (default 2,
//! each holding its own pooled connection) each take whatever is queued, up to
//! [`CommitConfig::batch_items_max`] items, append it with `schema::inbox::append_returning_keys`
//! (one statement: autocommit, all or nothing, and its `pg_notify` in the same transaction)
//! and only then answer every request of the batch:
//!
//! - each request gets its own counts: a key the statement inserted is credited to the first
//!   request in queue order that carried it; its other occurrences (in that request or in
//!   later ones) and keys already stored count as duplicates;
//! - when the batch fails, every request of it gets [`CommitFailed`] (the caller answers
//!   503): nothing is half-acknowledged, and since the batch is one statement nothing of it
//!   is stored either;
//! - a full queue makes `submit` wait (backpressure); the caller bounds the whole wait, queue
//!   included, with its own timeout, so memory stays bounded and nothing waits forever;
//! - the committers stop when every [`CommitQueue`] handle is dropped, after answering
//!   what was still queued.
//!
//! Two committers rather than one: while one waits for its commit to be flushed, the other
//! gathers and sends the next batch. Two transactions that insert the same new keys in
//! opposite orders can deadlock (PostgreSQL then aborts one); the committer retries that
//! batch once before failing it.

use schema::inbox::NewInboxItem;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

/// The committers' settings.
#[derive(Debug, Clone, Copy)]
pub struct CommitConfig {
    /// Committer tasks, each with its own connection (at least 1).
    pub committers: usize,
    /// A batch takes queued bodies until it holds this many items (a single larger body is
    /// a batch of its own).
    pub batch_items_max: usize,
    /// … or this many sealed bytes (bodies can be 3 MB each).
    pub batch_bytes_max: usize,
    /// Bodies that can wait in the queue; past that, requests wait to enter it.
    pub queue_bodies_max: usize,
    /// Longest a committer works on one batch (connection included) before failing it.
    pub batch_timeout: Duration,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            committers: 2,
            batch_items_max: 1_000,
            batch_bytes_max: 16 * 1024 * 1024,
            queue_bodies_max: 1_024,
            batch_timeout: crate::server::STORE_TIMEOUT,
        }
    }
}

/// A request's own outcome: its items stored now, and its items already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    pub stored: u64,
    pub duplicates: u64,
}

/// The batch holding a request's items was not committed (the committer logged why), or
/// the committers are gone. Nothing of the request is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the webhook's items were not committed")]
pub struct CommitFailed;

struct Job {
    items: Vec<NewInboxItem>,
    reply: oneshot::Sender<Result<Stored, CommitFailed>>,
}

/// The sending side of the queue; cheap to clone. The committers stop once every clone is
/// dropped and the queue is empty.
#[derive(Clone)]
pub struct CommitQueue {
    sender: mpsc::Sender<Job>,
}

impl CommitQueue {
    /// Starts `config.committers` committer tasks on the current tokio runtime.
    pub fn spawn(pool: schema::Pool, config: CommitConfig) -> (CommitQueue, Vec<JoinHandle<()>>) {
        let (sender, receiver) = mpsc::channel(config.queue_bodies_max.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let tasks = (0..config.committers.max(1))
            .map(|_| tokio::spawn(committer(pool.clone(), receiver.clone(), config)))
            .collect();
        (CommitQueue { sender }, tasks)
    }

    /// Queues `items` (waiting while the queue is full) and waits until the batch holding
    /// them is committed. The caller bounds the wait.
    pub async fn submit(&self, items: Vec<NewInboxItem>) -> Result<Stored, CommitFailed> {
        if items.is_empty() {
            return Ok(Stored::default());
        }
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Job { items, reply })
            .await
            .map_err(|_| CommitFailed)?;
        answer.await.unwrap_or(Err(CommitFailed))
    }
}

async fn committer(
    pool: schema::Pool,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    config: CommitConfig,
) {
    let mut client: Option<deadpool_postgres::Object> = None;
    loop {
        let jobs = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                break;
            };
            let mut items = first.items.len();
            let mut bytes = sealed_bytes(&first.items);
            let mut jobs = vec![first];
            while items < config.batch_items_max && bytes < config.batch_bytes_max {
                match receiver.try_recv() {
                    Ok(job) => {
                        items += job.items.len();
                        bytes += sealed_bytes(&job.items);
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        // A request that stopped waiting (its timeout, or the client went away) was answered
        // 503 already: its items are not stored now (Meta retries them).
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if jobs.is_empty() {
            continue;
        }
        let mut items = Vec::with_capacity(jobs.iter().map(|j| j.items.len()).sum());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((job.items.len(), job.reply));
            items.extend(job.items);
        }
        match tokio::time::timeout(config.batch_timeout, append(&pool, &mut client, &items)).await {
            Ok(Ok(inserted)) => {
                let mut inserted: HashSet<String> = inserted.into_iter().collect();
                let mut start = 0;
                for (count, reply) in replies {
                    let mut stored = Stored::default();
                    for item in &items[start..start + count] {
                        if inserted.remove(&item.dedupe_key) {
                            stored.stored += 1;
                        } else {
                            stored.duplicates += 1;
                        }
                    }
                    start += count;
                    let _ = reply.send(Ok(stored));
                }
            }
            failure => {
                match failure {
                    Ok(Err(error)) => tracing::error!(
                        %error,
                        bodies = replies.len(),
                        items = items.len(),
                        "appending a batch of webhook items failed"
                    ),
                    _ => tracing::error!(
                        timeout = ?config.batch_timeout,
                        bodies = replies.len(),
                        items = items.len(),
                        "appending a batch of webhook items timed out"
                    ),
                }
                // The connection may be broken or busy with the abandoned statement.
                client = None;
                for (_, reply) in replies {
                    let _ = reply.send(Err(CommitFailed));
                }
            }
        }
    }
}

fn sealed_bytes(items: &[NewInboxItem]) -> usize {
    items.iter().map(|i| i.sealed.len()).sum()
}

#[derive(Debug, thiserror::Error)]
enum AppendError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// One statement with every item of the batch, on the committer's connection (taken from the
/// pool when it has none); retried once when PostgreSQL chose it as a deadlock victim.
async fn append(
    pool: &schema::Pool,
    client: &mut Option<deadpool_postgres::Object>,
    items: &[NewInboxItem],
) -> Result<Vec<String>, AppendError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let connection = match client {
            Some(connection) => connection,
            None => client.insert(pool.get().await?),
        };
        match schema::inbox::append_returning_keys(&*connection, items).await {
            Ok(keys) => return Ok(keys),
            Err(error)
                if attempt == 1
                    && error.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                tracing::warn!("a batch of webhook items was a deadlock victim; retrying it");
            }
            Err(error) => return Err(error.into()),
        }
    }
}
