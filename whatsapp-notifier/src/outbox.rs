//! The SQL of `whatsapp_outbox` and `whatsapp_outbox_log` (migration V5) for sending.
//! Every change of a row and its log line are one statement (a data-modifying CTE), so the
//! row and its history never disagree.
//!
//! Architecture invariant: only this module and `statuses` know the outbox's SQL.

use crate::meta::Template;
use crate::tokens::SendingNumber;
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::GenericClient;
use uuid::Uuid;
use vault::SealedRecord;

/// The context a row's recipient is sealed under (`vault::Vault::seal_record`):
/// `whatsapp_outbox`, a NUL byte, and the row's `dedupe_key`. Whoever queues a row seals
/// the recipient's wa_id (digits, UTF-8) with exactly this.
pub fn seal_context(dedupe_key: &str) -> Vec<u8> {
    [b"whatsapp_outbox\0".as_slice(), dedupe_key.as_bytes()].concat()
}

/// Defaults when a row's number has no `whatsapp_numbers` row (the V5 column defaults).
pub const FALLBACK_TEMPLATE_DEFAULT: &str = "loyalty_update";
pub const TEMPLATE_LANGUAGE_DEFAULT: &str = "en";

/// A row claimed for sending (`state = 'sending'`, `attempts` already counted).
pub struct ClaimedMessage {
    pub message_id: Uuid,
    pub dedupe_key: String,
    pub phone_number_id: String,
    pub customer_digest: Vec<u8>,
    pub recipient: SealedRecord,
    pub body: Value,
    /// This attempt's number, 1-based.
    pub attempts: u32,
    /// The customer wrote in within the last 24 hours (per `whatsapp_conversations`).
    pub window_open: bool,
    /// An earlier attempt already switched this row to the template.
    pub template_chosen: bool,
    pub template: Template,
    /// A broadcast row (kind `broadcast`): its body is a
    /// `ledger_core::broadcast::BroadcastTemplate`, always sent as that template.
    pub broadcast: bool,
    /// The tenant the message was queued for (`None` for a message of no tenant yet).
    pub tenant_id: Option<Uuid>,
    /// The number it is sent from, with its sealed token: read with the claim, so a token
    /// rotated or a number detached since the message was queued counts.
    pub sending_number: SendingNumber,
}

impl std::fmt::Debug for ClaimedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMessage")
            .field("message_id", &self.message_id)
            .field("phone_number_id", &self.phone_number_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Claims up to `limit` due rows. A row is due when it is queued, its time has come, no
/// earlier row (by `queued_at`, then `message_id`) to the same customer on the same number
/// is still queued or sending (messages to one recipient go out in queued order, one at a
/// time), and no message to that recipient was sent, or changed status, within
/// `recipient_interval` (pacing; a status only makes it more conservative). All of it holds
/// whichever notifier process claims. `SKIP LOCKED` lets several notifiers claim side by
/// side without waiting or taking the same row.
///
/// Replies and notifications are claimed before broadcast rows, then by due time: a
/// broadcast's backlog must not hold a customer's answer or receipt back. (The broadcast
/// feeder keeps each tenant's unsent broadcast rows few, so they are not starved either:
/// they go whenever no reply is due.) A withdrawn row (a paused broadcast's) is neither
/// claimed nor counted as an earlier pending row of its recipient.
pub async fn claim(
    client: &impl GenericClient,
    limit: i64,
    recipient_interval: Duration,
) -> Result<Vec<ClaimedMessage>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH picked AS MATERIALIZED ( \
               SELECT q.message_id FROM whatsapp_outbox q \
                WHERE q.state = 'queued' AND q.next_attempt_at <= now() \
                  AND NOT EXISTS ( \
                    SELECT 1 FROM whatsapp_outbox e \
                     WHERE e.customer_digest = q.customer_digest \
                       AND e.phone_number_id = q.phone_number_id \
                       AND e.state IN ('queued', 'sending') \
                       AND (e.queued_at, e.message_id) < (q.queued_at, q.message_id)) \
                  AND NOT EXISTS ( \
                    SELECT 1 FROM whatsapp_outbox s \
                     WHERE s.customer_digest = q.customer_digest \
                       AND s.phone_number_id = q.phone_number_id \
                       AND s.sent_at > now() - make_interval(secs => $2::float8)) \
                ORDER BY (q.kind = 'broadcast'), q.next_attempt_at \
                LIMIT $1 \
                FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE whatsapp_outbox o \
                  SET state = 'sending', attempts = o.attempts + 1, updated_at = now() \
                 FROM picked p \
                WHERE o.message_id = p.message_id AND o.state = 'queued' \
               RETURNING o.message_id, o.dedupe_key, o.phone_number_id, o.customer_digest, \
                         o.master_key_id, o.wrapped_key, o.sealed_recipient, o.body::text AS body, o.attempts), \
             logged AS ( \
               INSERT INTO whatsapp_outbox_log (message_id, outcome) \
               SELECT message_id, 'attempt' FROM claimed) \
             SELECT c.*, \
                    COALESCE((SELECT w.last_inbound_at > now() - interval '24 hours' \
                                FROM whatsapp_conversations w \
                               WHERE w.customer_digest = c.customer_digest \
                                 AND w.phone_number_id = c.phone_number_id), false), \
                    EXISTS (SELECT 1 FROM whatsapp_outbox_log l \
                             WHERE l.message_id = c.message_id \
                               AND l.outcome = 'template_fallback'), \
                    n.fallback_template, n.template_language, \
                    n.phone_number_id IS NOT NULL, n.tenant_id, n.master_key_id, n.wrapped_key, \
                    n.sealed_access_token, o.tenant_id, o.kind = 'broadcast' \
               FROM claimed c \
               JOIN whatsapp_outbox o ON o.message_id = c.message_id \
               LEFT JOIN whatsapp_numbers n ON n.phone_number_id = c.phone_number_id",
            &[&limit, &recipient_interval.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let attempts: i32 = row.get(8);
            let name: Option<String> = row.get(11);
            let language: Option<String> = row.get(12);
            let registered: bool = row.get(13);
            let number_tenant: Option<Uuid> = row.get(14);
            let master_key_id: Option<String> = row.get(15);
            let wrapped_key: Option<Vec<u8>> = row.get(16);
            let sealed: Option<Vec<u8>> = row.get(17);
            let token = match (master_key_id, wrapped_key, sealed) {
                (Some(master_key_id), Some(wrapped_key), Some(sealed)) => Some(SealedRecord {
                    master_key_id,
                    wrapped_key,
                    sealed,
                }),
                _ => None,
            };
            let sending_number = match (registered, number_tenant) {
                (false, _) => SendingNumber::NotRegistered,
                (true, None) => SendingNumber::Shared,
                (true, Some(tenant)) => SendingNumber::Own { tenant, token },
            };
            ClaimedMessage {
                tenant_id: row.get(18),
                broadcast: row.get(19),
                sending_number,
                message_id: row.get(0),
                dedupe_key: row.get(1),
                phone_number_id: row.get(2),
                customer_digest: row.get(3),
                recipient: SealedRecord {
                    master_key_id: row.get(4),
                    wrapped_key: row.get(5),
                    sealed: row.get(6),
                },
                // `jsonb` as text: the column is JSON by its type, so this parses.
                body: serde_json::from_str(row.get::<_, &str>(7)).unwrap_or(Value::Null),
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                window_open: row.get(9),
                template_chosen: row.get(10),
                template: Template {
                    name: name.unwrap_or_else(|| FALLBACK_TEMPLATE_DEFAULT.to_owned()),
                    language: language.unwrap_or_else(|| TEMPLATE_LANGUAGE_DEFAULT.to_owned()),
                },
            }
        })
        .collect())
}

/// Records accepted sends in one statement (one transaction): each row `sent` with its
/// wamid's digest and `sent_at`, and a `sent` log line; rows already past `sending` untouched.
pub async fn record_sent_many(
    client: &deadpool_postgres::ClientWrapper,
    records: &[&crate::recorder::SentRecord],
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = records.iter().map(|r| r.message_id).collect();
    let digests: Vec<&[u8]> = records.iter().map(|r| r.wamid_digest.as_slice()).collect();
    let details: Vec<&str> = records.iter().map(|r| r.detail).collect();
    let statement = client
        .prepare_cached(
            "WITH updated AS ( \
               UPDATE whatsapp_outbox o SET state = 'sent', wamid_digest = r.digest, \
                      last_error_code = NULL, sent_at = now(), updated_at = now() \
                 FROM unnest($1::uuid[], $2::bytea[], $3::text[]) AS r(message_id, digest, detail) \
                WHERE o.message_id = r.message_id AND o.state IN ('sending', 'queued') \
               RETURNING o.message_id, r.digest, r.detail) \
             INSERT INTO whatsapp_outbox_log (message_id, outcome, wamid_digest, detail) \
             SELECT message_id, 'sent', digest, detail FROM updated",
        )
        .await?;
    client
        .execute(&statement, &[&ids, &digests, &details])
        .await?;
    Ok(())
}

/// A transient refusal: queued again after `delay`, or `failed` when this was the last of
/// `attempts_max`. Returns whether the row failed.
pub async fn record_retry(
    client: &impl GenericClient,
    message_id: Uuid,
    error_code: Option<i32>,
    delay: Duration,
    attempts_max: u32,
    detail: &str,
) -> Result<bool, tokio_postgres::Error> {
    let attempts_max = i32::try_from(attempts_max).unwrap_or(i32::MAX);
    let row = client
        .query_opt(
            "WITH updated AS ( \
               UPDATE whatsapp_outbox \
                  SET state = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'queued' END, \
                      next_attempt_at = now() + make_interval(secs => $3::float8), \
                      last_error_code = $2, updated_at = now() \
                WHERE message_id = $1 AND state = 'sending' \
               RETURNING message_id, state), \
             logged AS ( \
               INSERT INTO whatsapp_outbox_log (message_id, outcome, error_code, detail) \
               SELECT message_id, CASE WHEN state = 'failed' THEN 'failed' ELSE 'retry' END, \
                      $2, $5 FROM updated) \
             SELECT state FROM updated",
            &[
                &message_id,
                &error_code,
                &delay.as_secs_f64(),
                &attempts_max,
                &truncate(detail),
            ],
        )
        .await?;
    Ok(row.is_some_and(|r| r.get::<_, String>(0) == "failed"))
}

/// A permanent refusal: `failed` with the code.
pub async fn record_failed(
    client: &impl GenericClient,
    message_id: Uuid,
    error_code: Option<i32>,
    detail: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "WITH updated AS ( \
               UPDATE whatsapp_outbox SET state = 'failed', last_error_code = $2, \
                      updated_at = now() \
                WHERE message_id = $1 AND state = 'sending' \
               RETURNING message_id) \
             INSERT INTO whatsapp_outbox_log (message_id, outcome, error_code, detail) \
             SELECT message_id, 'failed', $2, $3 FROM updated",
            &[&message_id, &error_code, &truncate(detail)],
        )
        .await?;
    Ok(())
}

/// The row is sent as the number's template from now on (window closed, or 131047).
pub async fn record_template_fallback(
    client: &impl GenericClient,
    message_id: Uuid,
    error_code: Option<i32>,
    detail: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO whatsapp_outbox_log (message_id, outcome, error_code, detail) \
             VALUES ($1, 'template_fallback', $2, $3)",
            &[&message_id, &error_code, &truncate(detail)],
        )
        .await?;
    Ok(())
}

/// Rows left in `sending` longer than `older_than` (their notifier crashed or lost its
/// database connection) go back to `queued`, due now. Returns how many.
pub async fn requeue_stuck(
    client: &impl GenericClient,
    older_than: Duration,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "WITH updated AS ( \
               UPDATE whatsapp_outbox SET state = 'queued', next_attempt_at = now(), \
                      updated_at = now() \
                WHERE state = 'sending' \
                  AND updated_at < now() - make_interval(secs => $1::float8) \
               RETURNING message_id) \
             INSERT INTO whatsapp_outbox_log (message_id, outcome, detail) \
             SELECT message_id, 'retry', 'stuck in sending: requeued' FROM updated",
            &[&older_than.as_secs_f64()],
        )
        .await
}

/// `detail` fits the log's 500-character limit.
fn truncate(detail: &str) -> String {
    detail.chars().take(500).collect()
}
