//! The group-commit writer: the one path by which commands become events.
//!
//! Handlers send a [`Submission`] with a reply channel over a bounded queue. The writer task
//! takes up to `batch_size_max` submissions (waiting at most `batch_wait_max` for the batch
//! to fill) and runs them in **one transaction**:
//!
//! 1. lock the heads of the tenants involved, in sorted order (first write of the transaction);
//! 2. catch the involved streams up from the cache's versions, and look up idempotency keys
//!    and phone numbers, in one round trip each;
//! 3. run the pure `decide` for each submission in order, evolving working copies, so two
//!    commands on one customer in one batch see each other; a refusal answers only its caller;
//! 4. insert every event with one statement, the idempotency records, the phone index, the
//!    redemption and referral codes, the reward stock counts, and advance each tenant's sequence and
//!    chain head;
//! 5. commit, and only then answer every caller.
//!
//! If the transaction fails, each submission is retried alone so one bad apple cannot fail
//! its neighbours; a caller whose transaction failed gets [`WriterError::Unavailable`] and
//! nothing of its command was written. (A redemption code that collides with one the tenant
//! already has fails its transaction on the primary key of `redemption_codes` in exactly this
//! way: that caller alone gets `Unavailable`, and a retry draws a new code.)
//!
//! **Reward stock.** A reward's stock is shared by all the tenant's customers, so no one
//! stream can decide it. `reward_stock` (V12) counts the units used of each reward (open
//! and fulfilled holds); the batch reads the counts of the tenants whose submissions need
//! them (`RedeemReward`, `UpdateReward`; `RetireReward` for its answer) after locking the tenants' heads, hands them to
//! `decide` as [`RewardStock`], applies each accepted decision's
//! [`stock_changes`](ledger_core::aggregate::stock_changes) to them before deciding the next
//! submission, and writes the summed changes in the same transaction as the events. Every
//! write of a tenant's counts happens under its head lock, so two writers (two processes)
//! take turns and the second reads the first's committed counts; a crash loses the count
//! together with the holds it counted. 50 concurrent redemptions of a reward with a stock of
//! 10 give exactly 10 holds (tests/it/rewards.rs).

use crate::store::{self, RecordedEvent, StoreError, TenantHead};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use ledger_core::aggregate::{stock_changes, Aggregate, LedgerState, NO_STOCK_USED};
use ledger_core::codec;
use ledger_core::command::{PhoneIndex, Target, WrappedDataKey};
use ledger_core::events::EventMetadata;
use ledger_core::{
    decide, Command, CustomerId, CustomerState, Event, EventId, RedemptionId, Rejection, RewardId,
    RewardStock, StreamId, TenantId, TenantState,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub batch_size_max: usize,
    pub batch_wait_max: Duration,
    pub queue_capacity: usize,
    /// Streams whose state the writer keeps in memory between batches; beyond this the
    /// cache is emptied and refilled from the table.
    pub cached_streams_max: usize,
}

/// A claim on an idempotency key: the key and a SHA-256 of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    pub request_hash: [u8; 32],
}

/// The exact bytes a caller was (or will again be) answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why the writer refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Rejected(Rejection),
    /// The phone number is already enrolled at this tenant, as this customer.
    PhoneAlreadyEnrolled(CustomerId),
}

/// What the render function of a submission is shown.
#[derive(Debug)]
pub enum Verdict<'a> {
    Accepted {
        events: &'a [Event],
        tenant: &'a TenantState,
        customer: &'a CustomerState,
        /// Units used of the tenant's rewards after the events, when the command decided on
        /// stock (`RedeemReward`, `UpdateReward`); otherwise empty.
        stock: &'a RewardStock,
    },
    Refused(&'a Refusal),
}

/// Turns a decision into the response the caller gets. It runs inside the batch, so the
/// response can be stored with the idempotency key in the same transaction as the events.
pub type Render = fn(&Submission, &Verdict<'_>) -> StoredResponse;

#[derive(Debug, Clone)]
pub struct Submission {
    pub tenant_id: TenantId,
    pub command: Command,
    pub metadata: EventMetadata,
    pub idempotency: Option<IdempotencyClaim>,
    pub render: Render,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Decided now: `events` were committed (empty when refused or when there was nothing
    /// to do) and `response` is what the caller should answer.
    Decided {
        response: StoredResponse,
        events: Vec<RecordedEvent>,
    },
    /// The idempotency key was used before with the same request: the first response.
    Replayed(StoredResponse),
    /// The idempotency key was used before with a different request.
    KeyReusedWithDifferentRequest,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    #[error("the writer has stopped")]
    Stopped,
}

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<Outcome, WriterError>>,
}

#[derive(Clone)]
pub struct WriterHandle {
    queue: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

/// Counters of the writer since it started (the API exports them on `/metrics`).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub transactions: AtomicU64,
    pub commands: AtomicU64,
    pub events: AtomicU64,
    pub failed_transactions: AtomicU64,
}

impl WriterHandle {
    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    pub async fn submit(&self, submission: Submission) -> Result<Outcome, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { submission, reply })
            .await
            .map_err(|_| WriterError::Stopped)?;
        answer.await.map_err(|_| WriterError::Stopped)?
    }
}

/// Starts the writer task. It stops when every handle has been dropped, after answering
/// what it has already taken. `committed` is notified after every commit that wrote events.
pub fn spawn(
    pool: Pool,
    config: WriterConfig,
    committed: Arc<Notify>,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
    let stats = Arc::new(WriterStats::default());
    let writer = Writer {
        pool,
        cache: HashMap::new(),
        freshness: Freshness::default(),
        config,
        committed,
        stats: stats.clone(),
    };
    let task = tokio::spawn(writer.run(receiver));
    (WriterHandle { queue, stats }, task)
}

/// Starts a writer for a caller that needs no commit notifications: CLI commands, tools,
/// tests. Its relay, if any, polls.
pub fn spawn_standalone(
    pool: Pool,
    config: WriterConfig,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    spawn(pool, config, Arc::new(Notify::new()))
}

/// The render function of callers that answer no HTTP request (the CLI, the expiry run):
/// no body; 201 when accepted, 409 when refused.
pub fn render_status_only(_: &Submission, verdict: &Verdict<'_>) -> StoredResponse {
    let status = match verdict {
        Verdict::Accepted { .. } => 201,
        Verdict::Refused(_) => 409,
    };
    StoredResponse {
        status,
        body: Vec::new(),
    }
}

#[derive(Debug, Clone)]
enum StreamState {
    Tenant(TenantState),
    Customer(CustomerState),
}

#[derive(Debug, Clone)]
struct Cached {
    version: i32,
    state: StreamState,
    /// The tenant whose events the stream holds; `None` while it has none. A customer id is
    /// only ever meaningful within its own tenant.
    owner: Option<TenantId>,
    /// The owner's head sequence at which this state was last known to be current; -1
    /// when never (see [`Freshness`]).
    verified_at: i64,
}

impl Cached {
    fn empty(stream: StreamId) -> Self {
        let state = match stream {
            StreamId::Tenant(_) => StreamState::Tenant(TenantState::default()),
            StreamId::Customer(_) => StreamState::Customer(CustomerState::default()),
        };
        Cached {
            version: 0,
            state,
            owner: None,
            verified_at: -1,
        }
    }

    fn apply(&mut self, event: &Event) {
        match &mut self.state {
            StreamState::Tenant(state) => state.apply(event),
            StreamState::Customer(state) => state.apply(event),
        }
    }
}

/// When a cached stream state can be trusted without a catch-up query.
///
/// Every event of a tenant advances the tenant's head sequence, and the head is locked for
/// the whole batch. If the head is where this writer left it at its last commit, nobody else
/// has appended to the tenant since. So a state verified at head `v` is still current at
/// head `h` when every append between `v` and `h` was this writer's own (which it applied
/// to its cache as it went): that is, when `v >= trusted_since[tenant]`, the head at which
/// this writer last found a stranger's append. Another writer (another process) moves
/// `trusted_since` forward and with it invalidates every older state of that tenant at once.
#[derive(Debug, Default)]
struct Freshness {
    /// Each tenant's head sequence as this writer left it at its last commit.
    known_heads: HashMap<TenantId, i64>,
    /// Per tenant, the head from which on all appends are known to be this writer's.
    trusted_since: HashMap<TenantId, i64>,
}

impl Freshness {
    /// Called with each head as locked at the start of a batch.
    fn observe(&mut self, tenant: TenantId, locked_sequence: i64) {
        if self.known_heads.get(&tenant) != Some(&locked_sequence) {
            self.trusted_since.insert(tenant, locked_sequence);
        }
    }

    fn is_current(&self, cached: &Cached, locked: &[(TenantId, TenantHead)]) -> bool {
        let Some(owner) = cached.owner else {
            return false;
        };
        let owner_locked = locked.iter().any(|(tenant, _)| *tenant == owner);
        let trusted_since = self.trusted_since.get(&owner).copied().unwrap_or(i64::MAX);
        owner_locked && cached.verified_at >= trusted_since
    }

    fn committed(&mut self, tenant: TenantId, sequence: i64) {
        self.known_heads.insert(tenant, sequence);
    }

    fn forget(&mut self, tenant: TenantId) {
        self.known_heads.remove(&tenant);
    }
}

struct Writer {
    pool: Pool,
    cache: HashMap<StreamId, Cached>,
    freshness: Freshness,
    config: WriterConfig,
    committed: Arc<Notify>,
    stats: Arc<WriterStats>,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.config.batch_size_max);
        while let Some(first) = receiver.recv().await {
            batch.push(first);
            self.fill(&mut receiver, &mut batch).await;
            self.process(std::mem::take(&mut batch)).await;
        }
        tracing::info!("group-commit writer stopped: every handle was dropped");
    }

    /// Takes what is already queued, then waits up to `batch_wait_max` for more.
    async fn fill(&self, receiver: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
        let deadline = tokio::time::Instant::now() + self.config.batch_wait_max;
        while batch.len() < self.config.batch_size_max {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, receiver.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        Ok(None) | Err(_) => return,
                    }
                }
            }
        }
    }

    async fn process(&mut self, jobs: Vec<Job>) {
        let submissions: Vec<&Submission> = jobs.iter().map(|j| &j.submission).collect();
        match self.execute(&submissions).await {
            Ok(outcomes) => answer(jobs, outcomes.into_iter().map(Ok)),
            Err(error) if jobs.len() == 1 => {
                tracing::error!(%error, "append transaction failed");
                answer(jobs, std::iter::once(Err(unavailable(&error))));
            }
            Err(error) => {
                tracing::warn!(%error, batch = jobs.len(), "batch failed; retrying each command alone");
                for job in jobs {
                    let result = self
                        .execute(&[&job.submission])
                        .await
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(|error| {
                            tracing::error!(%error, "append transaction failed");
                            unavailable(&error)
                        });
                    let _ = job.reply.send(result);
                }
            }
        }
    }

    async fn execute(&mut self, submissions: &[&Submission]) -> Result<Vec<Outcome>, StoreError> {
        let result = self.transact(submissions).await;
        if result.is_err() {
            for submission in submissions {
                self.freshness.forget(submission.tenant_id);
            }
            self.stats
                .failed_transactions
                .fetch_add(1, Ordering::Relaxed);
        }
        let (mut batch, decisions) = result?;
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.stats
            .commands
            .fetch_add(submissions.len() as u64, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        if !batch.events.is_empty() {
            self.committed.notify_one();
        }
        if self.cache.len() + batch.streams.len() > self.config.cached_streams_max {
            self.cache.clear();
        }
        for (tenant, head) in &batch.heads {
            self.freshness.committed(*tenant, head.sequence);
        }
        for (stream, mut cached) in std::mem::take(&mut batch.streams) {
            // Current as of this commit: caught up under the lock, then our own events applied.
            cached.verified_at = cached
                .owner
                .and_then(|owner| batch.heads.iter().find(|(t, _)| *t == owner))
                .map_or(-1, |(_, head)| head.sequence);
            self.cache.insert(stream, cached);
        }
        Ok(Batch::into_outcomes(batch.events, decisions))
    }

    /// Loading takes the involved streams out of the cache; `execute` puts them back after
    /// the commit. If the transaction fails they are simply reloaded next time.
    async fn transact(
        &mut self,
        submissions: &[&Submission],
    ) -> Result<(Batch, Vec<Decision>), StoreError> {
        let mut client =
            self.pool.get().await.map_err(|e| {
                StoreError::Malformed(format!("no database connection available: {e}"))
            })?;
        let transaction = client.transaction().await?;
        // Row-level security admits this transaction to the batch's tenants only.
        let mut tenants: Vec<TenantId> = submissions.iter().map(|s| s.tenant_id).collect();
        tenants.sort_unstable();
        tenants.dedup();
        crate::tenancy::set_scope(&transaction, &tenants).await?;
        let mut batch = Batch::load(
            &transaction,
            &mut self.cache,
            &mut self.freshness,
            submissions,
        )
        .await?;
        let decisions = batch.decide_all(submissions)?;
        batch.write(&transaction).await?;
        transaction.commit().await?;
        Ok((batch, decisions))
    }
}

fn unavailable(error: &StoreError) -> WriterError {
    WriterError::Unavailable(error.to_string())
}

fn answer(jobs: Vec<Job>, outcomes: impl Iterator<Item = Result<Outcome, WriterError>>) {
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        // A caller that gave up (client disconnected) is not an error of the writer.
        let _ = job.reply.send(outcome);
    }
}

/// A submission's outcome before the commit: its events stay in the batch (to be inserted
/// with one statement) until the commit hands them to their callers.
enum Decision {
    Decided {
        response: StoredResponse,
        events_sealed: usize,
    },
    Replayed(StoredResponse),
    KeyReused,
}

/// One batch's working set, loaded under the tenant locks.
struct Batch {
    recorded_at: DateTime<Utc>,
    heads: Vec<(TenantId, TenantHead)>,
    streams: HashMap<StreamId, Cached>,
    /// Idempotency records: those already stored, then those this batch adds.
    idempotency: IdempotencyMap,
    /// Keys of `idempotency` this batch adds.
    new_idempotency: Vec<IdempotencyKey>,
    phones: HashMap<(TenantId, PhoneIndex), CustomerId>,
    /// Enrolments this batch decided: the phone index and data key rows to write.
    enrolled: Vec<Enrolled>,
    /// Customers this batch erased: their data key and phone index rows to delete.
    erased: Vec<(TenantId, CustomerId)>,
    /// Reward redemptions this batch decided: the code rows to write.
    codes: Vec<CodeRow>,
    /// Units used of each reward, for the tenants whose submissions decide on stock; kept in
    /// step with this batch's decisions.
    stock: HashMap<TenantId, RewardStock>,
    /// The changes to write to `reward_stock`, summed per reward.
    stock_changes: BTreeMap<(TenantId, RewardId), i64>,
    events: Vec<RecordedEvent>,
}

/// The `redemption_codes` row of one reward redemption, written with its event.
struct CodeRow {
    tenant_id: TenantId,
    code: String,
    customer_id: CustomerId,
    redemption_id: RedemptionId,
}

/// The write-side rows of one enrolment, written in the same transaction as its event.
struct Enrolled {
    tenant_id: TenantId,
    customer_id: CustomerId,
    phone_index: PhoneIndex,
    data_key: WrappedDataKey,
    /// The customer's own referral code, for `referral_codes`.
    referral_code: String,
}

fn stream_of(submission: &Submission) -> StreamId {
    match submission.command.target() {
        Target::Tenant => StreamId::Tenant(submission.tenant_id),
        Target::Customer(customer) => StreamId::Customer(customer),
    }
}

fn enrolled_phone(command: &Command) -> Option<PhoneIndex> {
    match command {
        Command::EnrolCustomer { phone_index, .. } => Some(*phone_index),
        _ => None,
    }
}

impl Batch {
    async fn load(
        client: &impl GenericClient,
        cache: &mut HashMap<StreamId, Cached>,
        freshness: &mut Freshness,
        submissions: &[&Submission],
    ) -> Result<Batch, StoreError> {
        let registering: Vec<TenantId> = submissions
            .iter()
            .filter(|s| matches!(s.command, Command::RegisterTenant { .. }))
            .map(|s| s.tenant_id)
            .collect();
        store::create_tenant_heads(client, &registering).await?;
        let tenants: Vec<TenantId> = submissions.iter().map(|s| s.tenant_id).collect();
        let heads = store::lock_tenant_heads(client, &tenants).await?;

        let mut streams: HashMap<StreamId, Cached> = HashMap::new();
        for submission in submissions {
            for stream in [
                StreamId::Tenant(submission.tenant_id),
                stream_of(submission),
            ] {
                streams.entry(stream).or_insert_with(|| {
                    cache
                        .remove(&stream)
                        .unwrap_or_else(|| Cached::empty(stream))
                });
            }
        }
        for (tenant, head) in &heads {
            freshness.observe(*tenant, head.sequence);
        }
        let stale: Vec<(StreamId, i32)> = streams
            .iter()
            .filter(|(_, cached)| !freshness.is_current(cached, &heads))
            .map(|(stream, cached)| (*stream, cached.version))
            .collect();
        let (caught_up, idempotency, phones, stock) = tokio::try_join!(
            catch_up(client, &stale),
            load_idempotency(client, submissions),
            load_phones(client, submissions),
            load_stock(client, submissions),
        )?;
        for (stream, owner, version, event) in caught_up {
            if let Some(cached) = streams.get_mut(&stream) {
                cached.apply(&event);
                cached.version = version;
                cached.owner = Some(owner);
            }
        }
        Ok(Batch {
            recorded_at: Utc::now(),
            heads,
            streams,
            idempotency,
            new_idempotency: Vec::new(),
            phones,
            enrolled: Vec::new(),
            erased: Vec::new(),
            codes: Vec::new(),
            stock,
            stock_changes: BTreeMap::new(),
            events: Vec::new(),
        })
    }

    fn decide_all(&mut self, submissions: &[&Submission]) -> Result<Vec<Decision>, StoreError> {
        submissions.iter().map(|s| self.decide_one(s)).collect()
    }

    fn decide_one(&mut self, submission: &Submission) -> Result<Decision, StoreError> {
        if let Some(claim) = &submission.idempotency {
            let key = (submission.tenant_id, claim.key.clone());
            if let Some((request_hash, response)) = self.idempotency.get(&key) {
                return Ok(if *request_hash == claim.request_hash {
                    Decision::Replayed(response.clone())
                } else {
                    Decision::KeyReused
                });
            }
        }
        let (response, events_sealed) = match self.phone_refusal(submission) {
            Some(refusal) => (
                (submission.render)(submission, &Verdict::Refused(&refusal)),
                0,
            ),
            None => self.decide_and_seal(submission)?,
        };
        if let Some(claim) = &submission.idempotency {
            let key = (submission.tenant_id, claim.key.clone());
            self.idempotency
                .insert(key.clone(), (claim.request_hash, response.clone()));
            self.new_idempotency.push(key);
        }
        Ok(Decision::Decided {
            response,
            events_sealed,
        })
    }

    /// Hands each caller its share of the batch's events, once they are committed.
    fn into_outcomes(events: Vec<RecordedEvent>, decisions: Vec<Decision>) -> Vec<Outcome> {
        let mut events = events.into_iter();
        decisions
            .into_iter()
            .map(|decision| match decision {
                Decision::Decided {
                    response,
                    events_sealed,
                } => Outcome::Decided {
                    response,
                    events: events.by_ref().take(events_sealed).collect(),
                },
                Decision::Replayed(response) => Outcome::Replayed(response),
                Decision::KeyReused => Outcome::KeyReusedWithDifferentRequest,
            })
            .collect()
    }

    fn phone_refusal(&self, submission: &Submission) -> Option<Refusal> {
        let phone = enrolled_phone(&submission.command)?;
        self.phones
            .get(&(submission.tenant_id, phone))
            .map(|customer| Refusal::PhoneAlreadyEnrolled(*customer))
    }

    fn decide_and_seal(
        &mut self,
        submission: &Submission,
    ) -> Result<(StoredResponse, usize), StoreError> {
        let tenant_stream = StreamId::Tenant(submission.tenant_id);
        let target = stream_of(submission);
        // The tenant's state is small (profile and rule set); the target's state, possibly
        // many lots, is taken out of the working set and put back, never copied.
        let tenant = match self.streams.get(&tenant_stream).map(|c| &c.state) {
            Some(StreamState::Tenant(state)) => state.clone(),
            _ => TenantState::default(),
        };
        let mut target_state = self
            .streams
            .remove(&target)
            .unwrap_or_else(|| Cached::empty(target));
        let result = self.decide_on(submission, &tenant, &mut target_state);
        self.streams.insert(target, target_state);
        result
    }

    fn decide_on(
        &mut self,
        submission: &Submission,
        tenant: &TenantState,
        target: &mut Cached,
    ) -> Result<(StoredResponse, usize), StoreError> {
        let refuse = |refusal: Refusal| {
            let response = (submission.render)(submission, &Verdict::Refused(&refusal));
            Ok((response, 0))
        };
        if target
            .owner
            .is_some_and(|owner| owner != submission.tenant_id)
        {
            // Another tenant's customer: to this tenant it does not exist.
            return refuse(Refusal::Rejected(Rejection::CustomerNotEnrolled));
        }
        let no_customer = CustomerState::default();
        let customer = match &target.state {
            StreamState::Customer(state) => state,
            StreamState::Tenant(_) => &no_customer,
        };
        let stock = self
            .stock
            .get(&submission.tenant_id)
            .unwrap_or(&NO_STOCK_USED);
        let ledger = LedgerState {
            tenant,
            customer,
            stock,
        };
        let events = match decide(ledger, &submission.command) {
            Err(rejection) => return refuse(Refusal::Rejected(rejection)),
            Ok(events) => events,
        };
        for (reward_id, delta) in stock_changes(customer, &events) {
            if let Some(stock) = self.stock.get_mut(&submission.tenant_id) {
                stock.apply(reward_id, delta);
            }
            *self
                .stock_changes
                .entry((submission.tenant_id, reward_id))
                .or_insert(0) += delta;
        }
        let version_before = target.version;
        target.owner = Some(submission.tenant_id);
        for event in &events {
            target.apply(event);
        }
        target.version += i32::try_from(events.len()).unwrap_or(0);
        let (tenant_after, customer_after) = match &target.state {
            StreamState::Tenant(state) => (state, &no_customer),
            StreamState::Customer(state) => (tenant, state),
        };
        let stock_after = self
            .stock
            .get(&submission.tenant_id)
            .unwrap_or(&NO_STOCK_USED);
        let response = (submission.render)(
            submission,
            &Verdict::Accepted {
                events: &events,
                tenant: tenant_after,
                customer: customer_after,
                stock: stock_after,
            },
        );
        let stream = stream_of(submission);
        self.seal(submission, stream, version_before, &events)?;
        match &submission.command {
            Command::EnrolCustomer {
                customer_id,
                phone_index,
                data_key,
                referral_code,
                ..
            } => {
                self.phones
                    .insert((submission.tenant_id, *phone_index), *customer_id);
                self.enrolled.push(Enrolled {
                    tenant_id: submission.tenant_id,
                    customer_id: *customer_id,
                    phone_index: *phone_index,
                    data_key: data_key.clone(),
                    referral_code: referral_code.to_string(),
                });
            }
            Command::EraseCustomer { customer_id, .. } => {
                // The number is free again within this batch too: it may enrol anew.
                self.phones.retain(|_, owner| owner != customer_id);
                self.erased.push((submission.tenant_id, *customer_id));
            }
            Command::RedeemReward {
                customer_id,
                redemption_id,
                code,
                ..
            } => {
                self.codes.push(CodeRow {
                    tenant_id: submission.tenant_id,
                    code: code.to_string(),
                    customer_id: *customer_id,
                    redemption_id: *redemption_id,
                });
            }
            _ => {}
        }
        Ok((response, events.len()))
    }

    fn seal(
        &mut self,
        submission: &Submission,
        stream: StreamId,
        version_before: i32,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let head = self
            .heads
            .iter_mut()
            .find(|(tenant, _)| *tenant == submission.tenant_id)
            .map(|(_, head)| head)
            .ok_or(StoreError::UnknownTenant(submission.tenant_id))?;
        let metadata = codec::encode_metadata(&submission.metadata)?;
        for (offset, event) in (1..).zip(events) {
            let sealed = head.seal(
                submission.tenant_id,
                EventId::from_uuid(Uuid::now_v7()),
                stream.to_string(),
                version_before + offset,
                event,
                metadata.clone(),
                self.recorded_at,
            )?;
            self.events.push(sealed);
        }
        Ok(())
    }

    /// Writes everything the batch decided; the statements are pipelined on the one
    /// connection (one round trip), and all of them commit or none.
    async fn write(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        tokio::try_join!(
            store::insert_events(client, &self.events),
            store::save_tenant_heads(client, &self.heads),
            save_idempotency(client, &self.new_idempotency, &self.idempotency),
            save_enrolments(client, &self.enrolled),
            shred_erased(client, &self.erased),
            save_redemption_codes(client, &self.codes),
            save_stock_changes(client, &self.stock_changes),
        )?;
        Ok(())
    }
}

/// The events of `streams` after the given versions.
async fn catch_up(
    client: &impl GenericClient,
    streams: &[(StreamId, i32)],
) -> Result<Vec<(StreamId, TenantId, i32, Event)>, StoreError> {
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = streams.iter().map(|(s, _)| s.to_string()).collect();
    let known: Vec<i32> = streams.iter().map(|(_, v)| *v).collect();
    // LATERAL keeps this an index range scan per stream: with a plain join the planner may
    // hash the whole event table once it has grown (measured: 45 ms at 127k events against
    // 0.3 ms).
    let rows = client
        .query(
            &client.prepare_cached(
            "SELECT e.stream_id, e.version, e.event_type, e.type_version, e.payload, e.tenant_id \
             FROM unnest($1::text[], $2::int[]) AS c(stream_id, known) \
             CROSS JOIN LATERAL ( \
                 SELECT * FROM events e \
                 WHERE e.stream_id = c.stream_id AND e.version > c.known \
                 ORDER BY e.version) e \
             ORDER BY e.stream_id, e.version").await?,
            &[&ids, &known],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let stream_id: String = row.try_get(0)?;
            let stream =
                StreamId::parse(&stream_id).map_err(|e| StoreError::Malformed(e.to_string()))?;
            let event_type: String = row.try_get(2)?;
            let type_version: i16 = row.try_get(3)?;
            let payload: Vec<u8> = row.try_get(4)?;
            let event = codec::decode(
                &event_type,
                u16::try_from(type_version).unwrap_or(0),
                &payload,
            )?;
            let owner = TenantId::from_uuid(row.try_get(5)?);
            Ok((stream, owner, row.try_get(1)?, event))
        })
        .collect()
}

/// `(tenant, key)` → (request hash, response).
type IdempotencyKey = (TenantId, String);
type IdempotencyRecord = ([u8; 32], StoredResponse);
type IdempotencyMap = HashMap<IdempotencyKey, IdempotencyRecord>;

async fn load_idempotency(
    client: &impl GenericClient,
    submissions: &[&Submission],
) -> Result<IdempotencyMap, StoreError> {
    let claims: Vec<(Uuid, &str)> = submissions
        .iter()
        .filter_map(|s| {
            s.idempotency
                .as_ref()
                .map(|c| (s.tenant_id.as_uuid(), c.key.as_str()))
        })
        .collect();
    if claims.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<Uuid> = claims.iter().map(|(t, _)| *t).collect();
    let keys: Vec<&str> = claims.iter().map(|(_, k)| *k).collect();
    let rows = client
        .query(
            &client.prepare_cached("SELECT r.tenant_id, r.idempotency_key, r.request_hash, r.response_status, r.response_body \
             FROM unnest($1::uuid[], $2::text[]) AS c(tenant_id, idempotency_key) \
             CROSS JOIN LATERAL ( \
                 SELECT * FROM idempotency_records r \
                 WHERE r.tenant_id = c.tenant_id AND r.idempotency_key = c.idempotency_key) r").await?,
            &[&tenants, &keys],
        )
        .await?;
    let mut records = HashMap::new();
    for row in rows {
        let hash: Vec<u8> = row.try_get(2)?;
        let hash = <[u8; 32]>::try_from(hash.as_slice())
            .map_err(|_| StoreError::Malformed("request hash".into()))?;
        let status: i16 = row.try_get(3)?;
        records.insert(
            (
                TenantId::from_uuid(row.try_get(0)?),
                row.try_get::<_, String>(1)?,
            ),
            (
                hash,
                StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    body: row.try_get(4)?,
                },
            ),
        );
    }
    Ok(records)
}

async fn load_phones(
    client: &impl GenericClient,
    submissions: &[&Submission],
) -> Result<HashMap<(TenantId, PhoneIndex), CustomerId>, StoreError> {
    let wanted: Vec<(Uuid, PhoneIndex)> = submissions
        .iter()
        .filter_map(|s| enrolled_phone(&s.command).map(|p| (s.tenant_id.as_uuid(), p)))
        .collect();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<Uuid> = wanted.iter().map(|(t, _)| *t).collect();
    let indexes: Vec<&[u8]> = wanted.iter().map(|(_, p)| p.0.as_slice()).collect();
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT p.tenant_id, p.phone_index, p.customer_id \
             FROM unnest($1::uuid[], $2::bytea[]) AS w(tenant_id, phone_index) \
             CROSS JOIN LATERAL ( \
                 SELECT * FROM customer_phone_index p \
                 WHERE p.tenant_id = w.tenant_id AND p.phone_index = w.phone_index) p",
                )
                .await?,
            &[&tenants, &indexes],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let index: Vec<u8> = row.try_get(1)?;
            let index: [u8; 32] = index
                .try_into()
                .map_err(|_| StoreError::Malformed("a phone index is not 32 bytes".into()))?;
            Ok((
                (TenantId::from_uuid(row.try_get(0)?), PhoneIndex(index)),
                CustomerId::from_uuid(row.try_get(2)?),
            ))
        })
        .collect()
}

async fn save_idempotency(
    client: &impl GenericClient,
    new_keys: &[IdempotencyKey],
    records: &IdempotencyMap,
) -> Result<(), StoreError> {
    let records: Vec<(&IdempotencyKey, &IdempotencyRecord)> = new_keys
        .iter()
        .filter_map(|key| records.get_key_value(key))
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = records.iter().map(|((t, _), _)| t.as_uuid()).collect();
    let keys: Vec<&str> = records.iter().map(|((_, k), _)| k.as_str()).collect();
    let hashes: Vec<&[u8]> = records.iter().map(|(_, (h, _))| h.as_slice()).collect();
    let statuses: Vec<i16> = records
        .iter()
        .map(|(_, (_, r))| i16::try_from(r.status).unwrap_or(500))
        .collect();
    let bodies: Vec<&[u8]> = records
        .iter()
        .map(|(_, (_, r))| r.body.as_slice())
        .collect();
    client
        .execute(
            &client.prepare_cached("INSERT INTO idempotency_records \
                 (tenant_id, idempotency_key, request_hash, response_status, response_body) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::smallint[], $5::bytea[])").await?,
            &[&tenants, &keys, &hashes, &statuses, &bodies],
        )
        .await?;
    Ok(())
}

/// The phone index and wrapped data key of each enrolment.
async fn save_enrolments(
    client: &impl GenericClient,
    enrolled: &[Enrolled],
) -> Result<(), StoreError> {
    if enrolled.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = enrolled.iter().map(|e| e.tenant_id.as_uuid()).collect();
    let customers: Vec<Uuid> = enrolled.iter().map(|e| e.customer_id.as_uuid()).collect();
    let indexes: Vec<&[u8]> = enrolled
        .iter()
        .map(|e| e.phone_index.0.as_slice())
        .collect();
    let master_key_ids: Vec<&str> = enrolled
        .iter()
        .map(|e| e.data_key.master_key_id.as_str())
        .collect();
    let wrapped: Vec<&[u8]> = enrolled
        .iter()
        .map(|e| e.data_key.bytes.as_slice())
        .collect();
    let save_index = client
        .prepare_cached(
            "INSERT INTO customer_phone_index (tenant_id, phone_index, customer_id) \
             SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::uuid[])",
        )
        .await?;
    let save_keys = client
        .prepare_cached(
            "INSERT INTO customer_keys (tenant_id, customer_id, master_key_id, wrapped_key) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[])",
        )
        .await?;
    // The primary key (tenant_id, code) refuses a code the tenant already has, which fails
    // the batch like a colliding redemption code (see the module documentation).
    let save_codes = client
        .prepare_cached(
            "INSERT INTO referral_codes (tenant_id, code, customer_id) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[])",
        )
        .await?;
    let codes: Vec<&str> = enrolled.iter().map(|e| e.referral_code.as_str()).collect();
    let index_params: [&(dyn ToSql + Sync); 3] = [&tenants, &indexes, &customers];
    let key_params: [&(dyn ToSql + Sync); 4] = [&tenants, &customers, &master_key_ids, &wrapped];
    let code_params: [&(dyn ToSql + Sync); 3] = [&tenants, &codes, &customers];
    tokio::try_join!(
        client.execute(&save_index, &index_params),
        client.execute(&save_keys, &key_params),
        client.execute(&save_codes, &code_params),
    )?;
    Ok(())
}

/// Crypto-shredding: deletes the erased customers' data keys (their sealed personal data
/// can no longer be opened) and phone index rows (the number may enrol again, as new).
async fn shred_erased(
    client: &impl GenericClient,
    erased: &[(TenantId, CustomerId)],
) -> Result<(), StoreError> {
    if erased.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = erased.iter().map(|(_, c)| c.as_uuid()).collect();
    let delete_keys = client
        .prepare_cached("DELETE FROM customer_keys WHERE customer_id = ANY ($1::uuid[])")
        .await?;
    let delete_index = client
        .prepare_cached("DELETE FROM customer_phone_index WHERE customer_id = ANY ($1::uuid[])")
        .await?;
    let params: [&(dyn ToSql + Sync); 1] = [&customers];
    tokio::try_join!(
        client.execute(&delete_keys, &params),
        client.execute(&delete_index, &params),
    )?;
    Ok(())
}

/// The code of each reward redemption. The primary key `(tenant_id, code)` refuses a code the
/// tenant already has, which fails the batch (see the module documentation).
async fn save_redemption_codes(
    client: &impl GenericClient,
    codes: &[CodeRow],
) -> Result<(), StoreError> {
    if codes.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = codes.iter().map(|c| c.tenant_id.as_uuid()).collect();
    let texts: Vec<&str> = codes.iter().map(|c| c.code.as_str()).collect();
    let customers: Vec<Uuid> = codes.iter().map(|c| c.customer_id.as_uuid()).collect();
    let redemptions: Vec<Uuid> = codes.iter().map(|c| c.redemption_id.as_uuid()).collect();
    client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO redemption_codes (tenant_id, code, customer_id, redemption_id) \
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[])",
                )
                .await?,
            &[&tenants, &texts, &customers, &redemptions],
        )
        .await?;
    Ok(())
}

/// Whether deciding `command` needs the tenant's reward stock counts (a retirement only to
/// answer with the stock left).
fn needs_stock(command: &Command) -> bool {
    matches!(
        command,
        Command::RedeemReward { .. } | Command::UpdateReward { .. } | Command::RetireReward { .. }
    )
}

/// The units used of every reward of the tenants whose submissions need them, read under
/// the tenants' head locks (so no other writer changes them until this batch commits).
async fn load_stock(
    client: &impl GenericClient,
    submissions: &[&Submission],
) -> Result<HashMap<TenantId, RewardStock>, StoreError> {
    let mut tenants: Vec<Uuid> = submissions
        .iter()
        .filter(|s| needs_stock(&s.command))
        .map(|s| s.tenant_id.as_uuid())
        .collect();
    if tenants.is_empty() {
        return Ok(HashMap::new());
    }
    tenants.sort_unstable();
    tenants.dedup();
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT tenant_id, reward_id, used FROM reward_stock \
                     WHERE tenant_id = ANY ($1::uuid[])",
                )
                .await?,
            &[&tenants],
        )
        .await?;
    let mut used: HashMap<TenantId, Vec<(RewardId, u32)>> = tenants
        .iter()
        .map(|t| (TenantId::from_uuid(*t), Vec::new()))
        .collect();
    for row in rows {
        let units: i32 = row.try_get(2)?;
        let units = u32::try_from(units)
            .map_err(|_| StoreError::Malformed("a negative reward_stock count".into()))?;
        used.entry(TenantId::from_uuid(row.try_get(0)?))
            .or_default()
            .push((RewardId::from_uuid(row.try_get(1)?), units));
    }
    Ok(used
        .into_iter()
        .map(|(tenant, used)| (tenant, RewardStock::from_used(used)))
        .collect())
}

/// Adds the batch's changes to `reward_stock` (a row per reward, created on its first
/// change). A count never goes below zero: a hold made before V12 was never counted, so its
/// release is not subtracted either (`RewardStock::apply` saturates the same way).
async fn save_stock_changes(
    client: &impl GenericClient,
    changes: &BTreeMap<(TenantId, RewardId), i64>,
) -> Result<(), StoreError> {
    let changes: Vec<_> = changes.iter().filter(|(_, delta)| **delta != 0).collect();
    if changes.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = changes.iter().map(|((t, _), _)| t.as_uuid()).collect();
    let rewards: Vec<Uuid> = changes.iter().map(|((_, r), _)| r.as_uuid()).collect();
    let deltas: Vec<i32> = changes
        .iter()
        .map(|(_, d)| i32::try_from(**d).unwrap_or(if **d > 0 { i32::MAX } else { i32::MIN }))
        .collect();
    client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO reward_stock AS s (tenant_id, reward_id, used) \
                     SELECT tenant_id, reward_id, greatest(delta, 0) \
                     FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS c(tenant_id, reward_id, delta) \
                     ON CONFLICT (tenant_id, reward_id) DO UPDATE \
                     SET used = greatest(s.used + ( \
                         SELECT c.delta FROM unnest($1::uuid[], $2::uuid[], $3::int[]) \
                             AS c(tenant_id, reward_id, delta) \
                         WHERE c.tenant_id = excluded.tenant_id AND c.reward_id = excluded.reward_id), 0)",
                )
                .await?,
            &[&tenants, &rewards, &deltas],
        )
        .await?;
    Ok(())
}
