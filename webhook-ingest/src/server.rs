//! The HTTP endpoint Meta calls: `GET` and `POST /webhooks/whatsapp`, plus `/health` and
//! `/metrics` for operators.
//!
//! `POST`, in this order (SPEC §9 defects 1 and 2):
//! 1. no `X-Hub-Signature-256`, or not `sha256=<64 hex>` → 401, before reading the body;
//! 2. read the raw body, at most `body_bytes_max` bytes (a larger `Content-Length` or stream
//!    → 413);
//! 3. check the signature over those exact bytes, in constant time → 401 when wrong;
//!    nothing is stored for a refused request;
//! 4. parse; a body that does not parse becomes one sealed `unparsed` row (Meta would
//!    otherwise retry it for a week), with a warning that holds no content;
//! 5. seal every item and hand them to the group commit ([`crate::commit`]): they are
//!    appended with the items of other concurrent webhooks in one statement (one
//!    transaction, all or nothing), skipping items already stored
//!    (`ON CONFLICT (dedupe_key) DO NOTHING`); the answer counts this body's items only;
//! 6. only after the commit, answer 200. A database that cannot be reached, a batch that
//!    fails, or a wait (queue included) longer than [`STORE_TIMEOUT`] → 503 and Meta
//!    retries; nothing is half-stored.
//!
//! No content of a signed body can produce a 5xx: the parser turns anything into items or
//! an `unparsed` row, and values that PostgreSQL would refuse never reach a column in the
//! clear (see [`crate::inbox`]).

use crate::commit::{CommitConfig, CommitQueue};
use crate::handshake::verify_subscription;
use crate::inbox::{items_of, unparsed_item};
use crate::payload::parse;
use crate::signature::{verify_signature, AppSecret, SignatureError, HEADER_NAME};
use actix_web::dev::Server;
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use ledger_api::problem::{Problem, JSON_CONTENT_TYPE, PROBLEM_CONTENT_TYPE};
use schema::inbox::NewInboxItem;
use std::collections::HashMap;
use std::fmt;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vault::Vault;

/// Where Meta posts (configure `https://<host>/webhooks/whatsapp` in the App Dashboard).
pub const WEBHOOK_PATH: &str = "/webhooks/whatsapp";
/// Meta sends bodies up to 3 MB; the default leaves room.
pub const BODY_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;
/// The smallest limit accepted: below Meta's 3 MB a legitimate body would be refused forever.
pub const BODY_BYTES_MAX_MIN: usize = 3 * 1024 * 1024;
/// Longest the append may take (connection included) before the request is answered 503.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after the server is told to stop.
pub const SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;
/// `Retry-After` of a 503, in seconds (Meta retries on its own schedule anyway).
const RETRY_AFTER_SECONDS: &str = "5";

/// The verify token of the `GET` handshake: a shared secret chosen in the App Dashboard.
#[derive(Clone, Default)]
pub struct VerifyToken(String);

impl VerifyToken {
    /// An empty token refuses every handshake.
    pub fn new(token: impl Into<String>) -> Self {
        VerifyToken(token.into())
    }
}

impl fmt::Debug for VerifyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyToken(<redacted>)")
    }
}

/// The ingest's settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub app_secret: AppSecret,
    pub verify_token: VerifyToken,
    /// Largest body accepted; larger ones are refused with 413 before being buffered.
    pub body_bytes_max: usize,
    /// The group commit's committers, batch and queue sizes.
    pub commit: CommitConfig,
}

/// Counters of what the ingest did, since the process started (Prometheus text at
/// `/metrics`).
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Bodies answered 200.
    pub bodies_accepted: AtomicU64,
    /// Items (rows) stored for the first time.
    pub items_stored: AtomicU64,
    /// Items already stored (Meta's retries and duplicates).
    pub items_duplicate: AtomicU64,
    /// Signed bodies that did not parse (stored as one `unparsed` row each).
    pub bodies_unparsed: AtomicU64,
    /// Requests refused for their signature (401).
    pub refused_signature: AtomicU64,
    /// Requests refused for their size (413).
    pub refused_too_large: AtomicU64,
    /// Bodies answered 503 because the database failed.
    pub store_failures: AtomicU64,
    /// Handshakes answered 200 / 403.
    pub handshakes_accepted: AtomicU64,
    pub handshakes_refused: AtomicU64,
}

impl IngestMetrics {
    fn render(&self) -> String {
        let counters: [(&str, &str, &AtomicU64); 9] = [
            (
                "bodies_accepted_total",
                "Webhook bodies answered 200.",
                &self.bodies_accepted,
            ),
            (
                "items_stored_total",
                "Webhook items stored for the first time.",
                &self.items_stored,
            ),
            (
                "items_duplicate_total",
                "Webhook items already stored (duplicates).",
                &self.items_duplicate,
            ),
            (
                "bodies_unparsed_total",
                "Signed webhook bodies that did not parse.",
                &self.bodies_unparsed,
            ),
            (
                "refused_signature_total",
                "Webhook requests refused for their signature.",
                &self.refused_signature,
            ),
            (
                "refused_too_large_total",
                "Webhook requests refused for their size.",
                &self.refused_too_large,
            ),
            (
                "store_failures_total",
                "Webhook bodies answered 503 (database).",
                &self.store_failures,
            ),
            (
                "handshakes_accepted_total",
                "Verification handshakes answered 200.",
                &self.handshakes_accepted,
            ),
            (
                "handshakes_refused_total",
                "Verification handshakes answered 403.",
                &self.handshakes_refused,
            ),
        ];
        let mut text = String::new();
        for (name, help, value) in counters {
            let name = format!("loyalty_whatsapp_ingest_{name}");
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        text
    }
}

/// What the handlers share.
pub struct IngestState {
    /// The platform pool (`loyalty_platform`): the inbox is a platform table.
    pub pool: schema::Pool,
    pub vault: Arc<Vault>,
    pub config: IngestConfig,
    pub metrics: Arc<IngestMetrics>,
}

impl IngestState {
    pub fn new(pool: schema::Pool, vault: Arc<Vault>, config: IngestConfig) -> Self {
        IngestState {
            pool,
            vault,
            config,
            metrics: Arc::default(),
        }
    }
}

/// What the handlers share: the state and the group commit's queue.
struct Ingest {
    state: IngestState,
    commits: CommitQueue,
}

impl std::ops::Deref for Ingest {
    type Target = IngestState;
    fn deref(&self) -> &IngestState {
        &self.state
    }
}

/// Builds and starts the ingest server on an already-bound listener (port 0 in tests), and
/// its committer tasks on the current tokio runtime (they stop once the server is dropped,
/// after answering what is queued). Returns the running server; stop it with
/// `server.handle().stop(true)`. Installs no signal handlers. Must be called inside a tokio
/// (or actix) runtime.
pub fn serve(listener: TcpListener, state: IngestState, workers: usize) -> std::io::Result<Server> {
    let (commits, _committers) = CommitQueue::spawn(state.pool.clone(), state.config.commit);
    let state = web::Data::new(Ingest { state, commits });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(|_, _| {
                actix_web::error::InternalError::from_response(
                    "bad query",
                    problem(Problem::new(
                        StatusCode::FORBIDDEN,
                        "verification-refused",
                        "Verification refused",
                        "the query string does not decode",
                    )),
                )
                .into()
            }))
            .wrap(ledger_api::security_headers::SecurityHeaders)
            .service(
                web::resource(WEBHOOK_PATH)
                    .route(web::get().to(handshake))
                    .route(web::post().to(receive))
                    .default_service(web::to(method_not_allowed)),
            )
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(not_found))
    })
    .workers(workers.max(1))
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
    .listen(listener)?
    .run();
    Ok(server)
}

/// `GET /webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`
async fn handshake(
    state: web::Data<Ingest>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let get = |key: &str| query.get(key).map(String::as_str);
    match verify_subscription(
        get("hub.mode"),
        get("hub.verify_token"),
        get("hub.challenge"),
        &state.config.verify_token.0,
    ) {
        Ok(challenge) => {
            state
                .metrics
                .handshakes_accepted
                .fetch_add(1, Ordering::Relaxed);
            HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body(challenge)
        }
        Err(error) => {
            state
                .metrics
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%error, "webhook verification refused");
            problem(Problem::new(
                StatusCode::FORBIDDEN,
                "verification-refused",
                "Verification refused",
                "hub.mode must be subscribe and hub.verify_token must match",
            ))
        }
    }
}

/// `POST /webhooks/whatsapp`: see the module docs for the order of the steps.
#[tracing::instrument(name = "whatsapp_webhook", skip_all, fields(bytes, items, stored))]
async fn receive(
    state: web::Data<Ingest>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let signature = request
        .headers()
        .get(HEADER_NAME)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    // A missing or malformed header is refused before a byte of the body is read; checking
    // against an empty body tells the format apart from a mismatch.
    if let Err(error @ (SignatureError::Missing | SignatureError::Malformed)) =
        verify_signature(&state.config.app_secret, b"", signature)
    {
        return refuse_signature(&state, error);
    }
    let body = match read_body(&request, payload, state.config.body_bytes_max).await {
        Ok(body) => body,
        Err(response) => {
            if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                state
                    .metrics
                    .refused_too_large
                    .fetch_add(1, Ordering::Relaxed);
            }
            return response;
        }
    };
    tracing::Span::current().record("bytes", body.len());
    if let Err(error) = verify_signature(&state.config.app_secret, &body, signature) {
        return refuse_signature(&state, error);
    }
    let items = match seal_items(&state, &body) {
        Ok(items) => items,
        Err(error) => {
            tracing::error!(%error, "sealing webhook items failed");
            return unavailable(&state, "the webhook could not be stored; retry later");
        }
    };
    tracing::Span::current().record("items", items.len());
    match tokio::time::timeout(STORE_TIMEOUT, state.commits.submit(items)).await {
        Ok(Ok(appended)) => {
            tracing::Span::current().record("stored", appended.stored);
            let metrics = &state.metrics;
            metrics.bodies_accepted.fetch_add(1, Ordering::Relaxed);
            metrics
                .items_stored
                .fetch_add(appended.stored, Ordering::Relaxed);
            metrics
                .items_duplicate
                .fetch_add(appended.duplicates, Ordering::Relaxed);
            HttpResponse::Ok()
                .content_type(JSON_CONTENT_TYPE)
                .body(format!(
                    r#"{{"stored":{},"duplicates":{}}}"#,
                    appended.stored, appended.duplicates
                ))
        }
        Ok(Err(error)) => {
            // The committer logged the database's reason once for the whole batch.
            tracing::debug!(%error, "webhook items not committed");
            unavailable(&state, "the webhook could not be stored; retry later")
        }
        Err(_) => {
            tracing::error!(timeout = ?STORE_TIMEOUT, "appending webhook items timed out");
            unavailable(
                &state,
                "the webhook could not be stored in time; retry later",
            )
        }
    }
}

/// The rows of a verified body: its items, or one `unparsed` row.
fn seal_items(state: &IngestState, body: &[u8]) -> Result<Vec<NewInboxItem>, vault::VaultError> {
    match parse(body) {
        Ok(batch) => items_of(&batch, &state.vault),
        Err(error) => {
            // The error names a path and an expectation, never content.
            tracing::warn!(%error, bytes = body.len(), "signed webhook body does not parse; stored as unparsed");
            state
                .metrics
                .bodies_unparsed
                .fetch_add(1, Ordering::Relaxed);
            Ok(vec![unparsed_item(body, &state.vault)?])
        }
    }
}

/// The raw body, at most `limit` bytes; a larger body is a 413, whether its
/// `Content-Length` says so up front or the stream runs over.
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, HttpResponse> {
    let too_large = || {
        problem(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            format!("the body is larger than {limit} bytes"),
        ))
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            problem(Problem::new(
                StatusCode::BAD_REQUEST,
                "body-unreadable",
                "Body unreadable",
                "the request body could not be read",
            ))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn refuse_signature(state: &IngestState, error: SignatureError) -> HttpResponse {
    state
        .metrics
        .refused_signature
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(%error, "webhook refused");
    problem(Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-signature",
        "Invalid signature",
        error.to_string(),
    ))
}

fn unavailable(state: &IngestState, detail: &str) -> HttpResponse {
    state.metrics.store_failures.fetch_add(1, Ordering::Relaxed);
    let mut response = problem(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Service unavailable",
        detail,
    ));
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

fn problem(problem: Problem) -> HttpResponse {
    HttpResponse::build(problem.status_code())
        .content_type(PROBLEM_CONTENT_TYPE)
        .body(problem.to_bytes())
}

async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(JSON_CONTENT_TYPE)
        .body(r#"{"status":"ok"}"#)
}

async fn metrics(state: web::Data<Ingest>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

async fn not_found() -> HttpResponse {
    problem(Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such route",
    ))
}

async fn method_not_allowed() -> HttpResponse {
    problem(Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "use GET (verification) or POST (notifications)",
    ))
}
