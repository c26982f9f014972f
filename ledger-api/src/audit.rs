//! `GET /v1/audit/export` (issue #6, item 2): the caller's tenant's whole ledger in the
//! audit export format (docs/AUDIT.md), the same lines `loyalty audit export` writes, for
//! `loyalty audit verify` to check offline.
//!
//! The export is read as `loyalty_app` in one `REPEATABLE READ, READ ONLY` transaction
//! scoped to the caller's tenant (`schema::tenancy::begin_read_only_snapshot`): row-level
//! security admits only that tenant's `events` and `signed_chain_heads` rows, whatever the
//! queries say. A task owns the connection and the transaction and reads one page at a time
//! (`schema::audit::ExportCursor`) into a channel of [`CHUNKS_IN_FLIGHT`] chunks, which the
//! response body drains: memory is a few pages whatever the size of the ledger, and a slow
//! client slows the reads instead of filling memory. A client that goes away drops the
//! receiver; the task then stops and its transaction rolls back.

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::ApiState;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use ledger_core::TenantId;
use schema::accounts::Permission;
use tokio::sync::mpsc;

/// Chunks (pages of lines) buffered between the reader and the response body.
const CHUNKS_IN_FLIGHT: usize = 2;

type Chunk = Result<Bytes, std::io::Error>;

#[utoipa::path(
    get,
    path = "/v1/audit/export",
    tag = "audit",
    responses(
        (status = 200, description = "The tenant's whole ledger as JSON Lines (`application/x-ndjson`), streamed from one snapshot: a header line, one line per event in `tenant_sequence` order (its canonical fields, payload and metadata in base64, `previous_hash` and `hash` in hex), and a trailer with the number of events and the tenant's latest signed chain head (or `null`). The format is docs/AUDIT.md's, version 1: `loyalty audit verify <file> --public-key <key from /.well-known/loyalty-ledger/audit-keys>` checks it offline. A body cut short (a database failure after the first page) has no trailer, which the verifier reports.", content_type = "application/x-ndjson", body = String),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, description = "`forbidden`: auditors and owners export the ledger.", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::InternalError),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("api_key" = []), ("user_token" = []))
)]
#[tracing::instrument(name = "audit_export", skip_all, fields(tenant_id = %caller.tenant_id))]
pub async fn export(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    caller.authorize(Permission::ExportLedger)?;
    let client = state.client().await?;
    let (sender, mut receiver) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    actix_web::rt::spawn(read_pages(
        client,
        caller.tenant_id,
        schema::audit::PAGE_SIZE,
        sender,
    ));
    // The header and the first page decide the status: a failure before them is a 503
    // problem; a failure after them can only cut the body short (no trailer).
    let first = match receiver.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(error)) => return Err(ApiError::Unavailable(format!("audit export: {error}"))),
        None => {
            return Err(ApiError::Internal(
                "audit export: the reader stopped".into(),
            ))
        }
    };
    let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(std::future::ready(Ok::<_, std::io::Error>(first))),
        rest,
    );
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"ledger-{}.jsonl\"",
                caller.tenant_id.as_uuid()
            ),
        ))
        .streaming(body))
}

/// Reads the export a page at a time into `sender` until the trailer, a failure (sent as
/// the last item) or the receiver is gone.
async fn read_pages(
    mut client: deadpool_postgres::Object,
    tenant: TenantId,
    page_size: i64,
    sender: mpsc::Sender<Chunk>,
) {
    let failed = |what: &str, error: &dyn std::fmt::Display| {
        tracing::warn!(%error, "audit export: {what}");
        std::io::Error::other(format!("{what}: {error}"))
    };
    let transaction = match schema::tenancy::begin_read_only_snapshot(&mut client, tenant).await {
        Ok(transaction) => transaction,
        Err(error) => {
            let _ = sender
                .send(Err(failed("beginning the snapshot", &error)))
                .await;
            return;
        }
    };
    let mut cursor = schema::audit::ExportCursor::new(tenant, page_size);
    loop {
        match cursor.next_chunk(&*transaction).await {
            Ok(Some(chunk)) if chunk.is_empty() => {}
            Ok(Some(chunk)) => {
                if sender.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return; // The client went away; the transaction rolls back on drop.
                }
            }
            Ok(None) => break,
            Err(error) => {
                let _ = sender.send(Err(failed("reading a page", &error))).await;
                return;
            }
        }
    }
    let exported = cursor.exported();
    if let Err(error) = transaction.commit().await {
        // Every line is already sent and the snapshot was read-only: nothing is lost.
        tracing::warn!(%error, "audit export: ending the snapshot");
    }
    tracing::info!(
        events = exported.events,
        signed_sequence = exported.signed_sequence,
        "audit export streamed"
    );
}
