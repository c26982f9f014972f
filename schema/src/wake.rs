//! Wake-ups with PostgreSQL's LISTEN/NOTIFY, so a tailing loop (the conversation processor
//! on the inbox, the notifier on the outbox) starts work when a row is committed instead of
//! at its next poll.
//!
//! A [`Wake`] owns one dedicated connection (not a pooled one: a pooled connection's
//! notifications are dropped by the pool's connection task, and LISTEN is session state
//! that must not leak into other users of the pool) that `LISTEN`s on one channel. Every
//! notification, and every (re)connection, stores a wake-up in a `tokio::sync::Notify`
//! (one permit: notifications arriving while the consumer is busy collapse into one).
//!
//! Notifications are a hint, never the source of truth: one sent while the listener is
//! reconnecting is lost, so consumers keep their poll as a slow fallback
//! ([`Wake::wait`] returns after `timeout` anyway), and a reconnection wakes them once.
//!
//! Channels: [`INBOX_CHANNEL`] (notified by `inbox::append` in the statement that inserts
//! messages or preferences) and [`OUTBOX_CHANNEL`] (notified in the transaction that queues
//! `whatsapp_outbox` rows).
//!
//! Cost: PostgreSQL serializes the commits of notifying transactions (a global lock held
//! across the commit's WAL flush), so notify only where someone waits and at most once per
//! transaction: at ~2,000 notifying commits/s (every status webhook) the ingest collapsed.
//! `NOTIFY` is delivered at commit, so a woken reader sees the rows (the inbox's
//! safe-position reader may still hold them back while an older transaction runs).

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_postgres::{AsyncMessage, NoTls};

/// Notified when `whatsapp_inbox` rows are committed.
pub const INBOX_CHANNEL: &str = "loyalty_inbox";
/// Notified when `whatsapp_outbox` rows are committed.
pub const OUTBOX_CHANNEL: &str = "loyalty_outbox";

/// The SQL a writer runs in its transaction to wake the outbox's listeners.
pub const NOTIFY_OUTBOX_SQL: &str = "SELECT pg_notify('loyalty_outbox', '')";

/// A wake-up source. Cheap to clone; clones share the one permit, so give each consumer
/// loop its own `Wake`.
#[derive(Clone, Default)]
pub struct Wake {
    notify: Arc<Notify>,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake").finish_non_exhaustive()
    }
}

impl Wake {
    /// A wake that never fires by itself ([`Wake::wait`] is then the plain poll).
    pub fn none() -> Wake {
        Wake::default()
    }

    /// Listens on `channel` over a dedicated connection made with `config`, reconnecting
    /// with backoff (100 ms doubling to 5 s) until `shutdown` turns true.
    pub fn listen(
        config: tokio_postgres::Config,
        channel: &'static str,
        shutdown: watch::Receiver<bool>,
    ) -> Wake {
        let wake = Wake::default();
        tokio::spawn(listen_loop(config, channel, wake.notify.clone(), shutdown));
        wake
    }

    /// Wakes the consumer (also what a notification does).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits for a wake-up (one stored while nobody waited counts).
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Waits for a wake-up or `timeout`, whichever comes first; `true` when woken.
    pub async fn wait(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.notify.notified())
            .await
            .is_ok()
    }
}

async fn listen_loop(
    config: tokio_postgres::Config,
    channel: &'static str,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    while !*shutdown.borrow() {
        let listened = tokio::select! {
            result = listen_once(&config, channel, &notify, &mut delay) => result,
            _ = shutdown.changed() => return,
        };
        if let Err(error) = listened {
            tracing::warn!(channel, %error, retry_in_ms = delay.as_millis() as u64, "LISTEN connection lost; reconnecting");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: connect, LISTEN, forward notifications until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &'static str,
    notify: &Arc<Notify>,
    delay: &mut Duration,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    // The connection must be polled for anything to happen (the LISTEN included): a task
    // drives it, forwards notifications, and ends with the connection.
    let forward_to = notify.clone();
    let mut driver = tokio::spawn(async move {
        loop {
            match futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => forward_to.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    });
    let listened = client.batch_execute(&format!("LISTEN {channel}")).await;
    if let Err(error) = listened {
        driver.abort();
        return Err(error);
    }
    tracing::debug!(channel, "listening");
    *delay = Duration::from_millis(100);
    // Anything committed while no one listened would otherwise wait for the poll.
    notify.notify_one();
    let ended = (&mut driver).await;
    drop(client);
    match ended {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
