//! The WhatsApp notifier: sends the rows of `whatsapp_outbox` (queued by the conversation
//! processor and the ledger notifications) to the Cloud API, or to the sandbox, which
//! answers the same wire contract. docs/WHATSAPP.md (`## Notifier`) is the contract.
//!
//! Reading order: [`meta`] (Meta's JSON and the HTTP client), [`retry`] (what a refusal
//! leads to, backoff), [`outbox`] (the SQL of claiming and recording), [`statuses`] (the
//! delivery-status tail), [`tokens`] (which access token a number sends with), then [`run`]
//! here (the loop: claim, limit, send, record).
//!
//! Architecture invariant: nothing personal leaves this crate except in the send body to
//! Meta: the recipient's number is opened in memory for the send and never logged, the
//! wamid is stored only as its keyed digest, and the access token only ever goes into the
//! `Authorization` header.

pub mod meta;
pub mod outbox;
pub mod recorder;
pub mod retry;
pub mod statuses;
pub mod tokens;

use ledger_api::rate_limit::{Quota, RateLimiter};
use ledger_core::broadcast::BroadcastTemplate;
use ledger_core::conversation::OutgoingMessage;
use meta::MetaClient;
use outbox::ClaimedMessage;
use recorder::{Recorder, SentRecord};
use retry::{Backoff, Decision};
use schema::wake::Wake;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use vault::Vault;

pub use meta::{AccessToken, MetaSettings, Template};

/// Everything the notifier needs besides its pool and vault.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub meta: MetaSettings,
    pub backoff: Backoff,
    /// Rows claimed per round (sent concurrently).
    pub batch_size_max: i64,
    /// Wait between rounds that found nothing to do.
    pub poll_interval: Duration,
    /// Sends per second per business phone number (Meta's default throughput is 80).
    pub number_sends_per_second_max: u32,
    /// Least time between two sends to one recipient.
    pub recipient_interval: Duration,
    /// Inbox rows read per status pass.
    pub status_batch_max: i64,
}

impl NotifierConfig {
    /// The defaults of the settings, for `meta`.
    pub fn new(meta: MetaSettings) -> NotifierConfig {
        NotifierConfig {
            meta,
            backoff: Backoff::default(),
            batch_size_max: 32,
            poll_interval: Duration::from_millis(250),
            number_sends_per_second_max: 80,
            recipient_interval: Duration::from_secs(1),
            status_batch_max: 256,
        }
    }

    /// How long a row may stay `sending` before it is taken for a crashed notifier's: two
    /// sends (free-form, then the template) with their timeouts, and a margin for the
    /// limits' waits.
    pub fn stuck_after(&self) -> Duration {
        self.meta.send_timeout * 3 + Duration::from_secs(5)
    }
}

/// Runs the sender and the status tail until `shutdown` turns true, polling the outbox
/// every `config.poll_interval`. Several processes may run it against one database.
pub async fn run(
    pool: schema::Pool,
    vault: Arc<Vault>,
    config: NotifierConfig,
    shutdown: watch::Receiver<bool>,
) {
    run_with_wake(pool, vault, config, Wake::none(), shutdown).await
}

/// [`run`], and the sender also claims as soon as `wake` fires (a
/// `schema::wake::Wake::listen` on `schema::wake::OUTBOX_CHANNEL`, which whoever queues
/// notifies in its transaction): the poll is then only the fallback for a lost
/// notification and for rows held back by the per-recipient pacing or a retry's backoff.
pub async fn run_with_wake(
    pool: schema::Pool,
    vault: Arc<Vault>,
    config: NotifierConfig,
    wake: Wake,
    shutdown: watch::Receiver<bool>,
) {
    let client = match MetaClient::new(config.meta.clone()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "the notifier cannot build its HTTP client");
            return;
        }
    };
    let sender = Arc::new(Sender::new(
        pool.clone(),
        vault.clone(),
        client,
        config.clone(),
    ));
    tokio::join!(
        sender.run(&wake, shutdown.clone()),
        run_statuses(pool, vault, config, shutdown)
    );
}

async fn run_statuses(
    pool: schema::Pool,
    vault: Arc<Vault>,
    config: NotifierConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let grace = config.stuck_after();
    while !*shutdown.borrow() {
        let result = match pool.get().await {
            Ok(mut client) => statuses::pass(&mut client, &vault, config.status_batch_max, grace)
                .await
                .map_err(|e| schema::db::error_text(&e)),
            Err(error) => Err(error.to_string()),
        };
        match result {
            Ok(pass) if pass.read as i64 >= config.status_batch_max => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "the status pass failed; retrying"),
        }
        pause(&mut shutdown, config.poll_interval).await;
    }
}

async fn pause(shutdown: &mut watch::Receiver<bool>, interval: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(interval) => {}
        _ = shutdown.changed() => {}
    }
}

/// Which body an attempt sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    FreeForm,
    Template,
    /// A broadcast's own template with its parameters, whatever the window.
    Broadcast,
}

/// What a claimed row holds: a message (free-form, or the number's template outside the
/// window), or a broadcast's template.
enum Outgoing {
    Message(OutgoingMessage),
    Broadcast(BroadcastTemplate),
}

struct Sender {
    pool: schema::Pool,
    vault: Arc<Vault>,
    client: MetaClient,
    config: NotifierConfig,
    /// Per business number, in this process (a limit shared by N processes is N times it:
    /// set the setting to Meta's limit divided by the number of notifier processes).
    per_number: RateLimiter<String>,
    /// One waiting line per business number in front of `per_number`.
    number_queues: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When stuck rows were last looked for (a sweep per `stuck_after / 4` is plenty).
    last_sweep: Mutex<Option<Instant>>,
    /// Group commit of the accepted sends' records.
    recorder: Recorder,
}

impl Sender {
    fn new(
        pool: schema::Pool,
        vault: Arc<Vault>,
        client: MetaClient,
        config: NotifierConfig,
    ) -> Self {
        let per_second = config.number_sends_per_second_max.clamp(1, 1_000_000);
        let quota = Quota::new(per_second, number_burst(per_second)).unwrap_or(ONE_PER_SECOND);
        Sender {
            recorder: Recorder::spawn(pool.clone(), 2),
            pool,
            vault,
            client,
            per_number: RateLimiter::new(quota, 10_000),
            number_queues: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(None),
            config,
        }
    }

    /// Claims and sends without waiting for a round to finish: up to `2 × batch_size_max`
    /// sends are in flight; a claim happens when woken, when the poll interval has passed,
    /// or when a send finishes while the sends were at that bound.
    ///
    /// Each send is its own task. Sends polled only by this loop (a `FuturesUnordered`)
    /// froze while the loop awaited a claim: sends already holding pooled connections could
    /// not finish and give them back, so the claim's `pool.get()` waited for them, and every
    /// other user of the pool with it (a hang of the whole process under load, seen in the
    /// 500 msg/s benchmark); frozen sends also capped the throughput.
    async fn run(self: &Arc<Self>, wake: &Wake, mut shutdown: watch::Receiver<bool>) {
        let batch = usize::try_from(self.config.batch_size_max.max(1)).unwrap_or(32);
        let in_flight_max = batch * 2;
        let mut in_flight = JoinSet::new();
        let mut claim_now = true;
        let mut next_poll = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            if claim_now && in_flight.len() < in_flight_max {
                next_poll = tokio::time::Instant::now() + self.config.poll_interval;
                let room = (in_flight_max - in_flight.len()).min(batch);
                match self.claim(room).await {
                    Ok(claimed) => {
                        let full = claimed.len() >= room;
                        for message in claimed {
                            let sender = Arc::clone(self);
                            in_flight.spawn(async move { sender.deliver_logged(message).await });
                        }
                        if full {
                            // More may be due: claim again (or wait for room).
                            continue;
                        }
                    }
                    Err(error) => {
                        let error = schema::db::error_text(error.as_ref());
                        tracing::warn!(%error, "a notifier claim failed; retrying")
                    }
                }
            }
            let was_full = in_flight.len() >= in_flight_max;
            claim_now = tokio::select! {
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(error) = joined {
                        // The row stays `sending`; the stuck-row sweep requeues it.
                        tracing::error!(%error, "a send task failed");
                    }
                    was_full
                }
                _ = wake.notified() => true,
                _ = tokio::time::sleep_until(next_poll) => true,
                _ = shutdown.changed() => false,
            };
        }
        // Finish the sends in hand: their outcomes are recorded, none is left `sending`.
        while in_flight.join_next().await.is_some() {}
    }

    /// Requeues stuck rows (now and then) and claims up to `limit` due rows.
    async fn claim(
        &self,
        limit: usize,
    ) -> Result<Vec<ClaimedMessage>, Box<dyn std::error::Error + Send + Sync>> {
        let client = self.pool.get().await?;
        if self.sweep_due() {
            let requeued = outbox::requeue_stuck(&**client, self.config.stuck_after()).await?;
            if requeued > 0 {
                tracing::warn!(requeued, "rows stuck in sending were requeued");
            }
        }
        Ok(outbox::claim(
            &**client,
            i64::try_from(limit).unwrap_or(i64::MAX).max(1),
            self.config.recipient_interval,
        )
        .await?)
    }

    async fn deliver_logged(&self, message: ClaimedMessage) {
        let message_id = message.message_id;
        if let Err(error) = self.deliver(message).await {
            // The row stays `sending`; the stuck-row sweep requeues it.
            let error = schema::db::error_text(&error);
            tracing::warn!(%message_id, %error, "recording a send failed");
        }
    }

    /// Whether to look for stuck rows now (and note that we did).
    fn sweep_due(&self) -> bool {
        let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = last.is_none_or(|at| now.duration_since(at) >= self.config.stuck_after() / 4);
        if due {
            *last = Some(now);
        }
        due
    }

    /// One attempt of one row: the free-form message (or the template outside the window),
    /// then the template if Meta says the window is closed; each outcome recorded.
    #[tracing::instrument(skip_all, fields(message_id = %message.message_id, attempt = message.attempts))]
    async fn deliver(&self, message: ClaimedMessage) -> Result<(), tokio_postgres::Error> {
        let Some((to, outgoing)) = self.open(&message) else {
            let db = self.db().await?;
            return outbox::record_failed(&**db, message.message_id, None, "the row does not open")
                .await;
        };
        let token = match tokens::token_for(
            &message.sending_number,
            &message.phone_number_id,
            message.tenant_id,
            self.client.platform_token(),
            &self.vault,
        ) {
            Ok(token) => token,
            Err(reason) => {
                tracing::warn!(
                    phone_number_id = %message.phone_number_id,
                    reason,
                    "send refused before sending: failed"
                );
                let db = self.db().await?;
                return outbox::record_failed(&**db, message.message_id, None, reason).await;
            }
        };
        let mut mode = Mode::FreeForm;
        if matches!(outgoing, Outgoing::Broadcast(_)) {
            // Marketing: always the approved template, inside the window or not.
            mode = Mode::Broadcast;
        } else if message.template_chosen {
            mode = Mode::Template;
        } else if !message.window_open {
            mode = Mode::Template;
            let db = self.db().await?;
            outbox::record_template_fallback(
                &**db,
                message.message_id,
                None,
                "outside the 24-hour window: the template instead",
            )
            .await?;
        }
        loop {
            let body = match (&outgoing, mode) {
                (Outgoing::Broadcast(template), _) => meta::broadcast_body(&to, template),
                (Outgoing::Message(outgoing), Mode::FreeForm) => meta::message_body(&to, outgoing),
                (Outgoing::Message(_), Mode::Template | Mode::Broadcast) => {
                    meta::template_body(&to, &message.template)
                }
            };
            self.pace_number(&message.phone_number_id).await;
            let result = self
                .client
                .send(&message.phone_number_id, &token, &body)
                .await;
            let error = match result {
                Ok(wamid) => {
                    let detail = match mode {
                        Mode::FreeForm => "free-form",
                        Mode::Template => "template",
                        Mode::Broadcast => "broadcast template",
                    };
                    tracing::info!(mode = detail, "sent");
                    let sent = SentRecord {
                        message_id: message.message_id,
                        wamid_digest: webhook_ingest::inbox::wamid_digest(&self.vault, &wamid),
                        detail,
                    };
                    if let Err(error) = self.recorder.record(sent).await {
                        // The row stays `sending`; the stuck-row sweep requeues it.
                        tracing::warn!(%error, "recording a send failed");
                    }
                    return Ok(());
                }
                Err(error) => error,
            };
            let db = self.db().await?;
            if !self.record_refusal(&db, &message, &error, mode).await? {
                return Ok(());
            }
            mode = Mode::Template;
        }
    }

    /// Records a refused send; `true` when the template is to be sent now instead (131047
    /// on the free-form message).
    async fn record_refusal(
        &self,
        db: &deadpool_postgres::Object,
        message: &ClaimedMessage,
        error: &meta::SendError,
        mode: Mode,
    ) -> Result<bool, tokio_postgres::Error> {
        let code = error.code().and_then(|c| i32::try_from(c).ok());
        match (retry::classify(error), mode) {
            (Decision::Template, Mode::FreeForm) => {
                tracing::info!(code, "outside the window: sending the template");
                outbox::record_template_fallback(
                    &***db,
                    message.message_id,
                    code,
                    "131047 on the free-form message: the template instead",
                )
                .await?;
                Ok(true)
            }
            (Decision::Retry, _) => {
                let delay = self
                    .config
                    .backoff
                    .delay(message.attempts, retry::random_jitter());
                let failed = outbox::record_retry(
                    &***db,
                    message.message_id,
                    code,
                    delay,
                    self.config.backoff.attempts_max,
                    &error.to_string(),
                )
                .await?;
                tracing::warn!(
                    code,
                    failed,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "send refused: retry"
                );
                Ok(false)
            }
            (Decision::Fail | Decision::Template, _) => {
                tracing::warn!(code, "send refused: failed");
                outbox::record_failed(&***db, message.message_id, code, &error.to_string()).await?;
                Ok(false)
            }
        }
    }

    /// The recipient's wa_id and the queued message; `None` if either does not open or
    /// parse (a bug or a wrong key: retrying cannot help).
    fn open(&self, message: &ClaimedMessage) -> Option<(String, Outgoing)> {
        let context = outbox::seal_context(&message.dedupe_key);
        let to = self
            .vault
            .open_record(&context, &message.recipient)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())?;
        let outgoing = if message.broadcast {
            Outgoing::Broadcast(serde_json::from_value(message.body.clone()).ok()?)
        } else {
            Outgoing::Message(serde_json::from_value(message.body.clone()).ok()?)
        };
        Some((to, outgoing))
    }

    async fn db(&self) -> Result<deadpool_postgres::Object, tokio_postgres::Error> {
        loop {
            match self.pool.get().await {
                Ok(client) => return Ok(client),
                Err(deadpool_postgres::PoolError::Backend(error)) => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "waiting for a database connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Waits until the number's token bucket allows one more send. The sends to one number
    /// wait their turn on a per-number queue (a fair async mutex), so only one of them polls
    /// the bucket: with every in-flight send polling it (each sleeping the sub-millisecond
    /// `retry_after`, rounded up to a timer tick) they woke by the thousands per second,
    /// and at 500 sends/s the notifier spent the CPU on wake-ups and sent ~150/s.
    async fn pace_number(&self, phone_number_id: &str) {
        let turn = {
            let mut queues = self.number_queues.lock().unwrap_or_else(|e| e.into_inner());
            queues
                .entry(phone_number_id.to_owned())
                .or_default()
                .clone()
        };
        let _turn = turn.lock().await;
        while let Err(retry_after) = self
            .per_number
            .check(phone_number_id.to_owned(), Instant::now())
        {
            tokio::time::sleep(retry_after.0).await;
        }
    }
}

/// The per-number token bucket's burst: a twentieth of a second's sends (at least 1), so
/// no second sees more than 1.05 × the limit. With a burst of 1 every send waited for the
/// previous one's token, one timer wake-up each: tokio's timer ticks in whole milliseconds
/// and fires late on a busy machine, so 1,000/s delivered about 250/s (the 500 msg/s
/// benchmark's replies queued for seconds behind it).
fn number_burst(per_second: u32) -> u32 {
    (per_second / 20).max(1)
}

/// The fallback of an out-of-range setting (checked at compile time).
const ONE_PER_SECOND: Quota = match Quota::new(1, 1) {
    Ok(quota) => quota,
    Err(_) => panic!("1 per second with a burst of 1 is a valid quota"),
};
