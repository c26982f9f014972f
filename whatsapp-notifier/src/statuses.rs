//! Delivery statuses: tail the inbox's `status` items from the cursor `notifier-statuses`,
//! open each, find the outbox row by its wamid's digest and move the row forward only
//! (`sent` < `delivered` < `read`; `failed` only from `sent`), logging each status. The
//! cursor advances in the same transaction, and its row is locked for the transaction, so
//! several notifiers take turns instead of applying a status twice.

use schema::inbox::{self, InboxKind, InboxPosition, InboxRow};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;
use vault::{SealedRecord, Vault};

/// The cursor's name in `whatsapp_inbox_cursors`.
pub const CURSOR_NAME: &str = "notifier-statuses";

/// A delivery status of one of our messages, as Meta reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    /// Undeliverable after Meta accepted it, with Meta's first error code.
    Failed(Option<i32>),
}

impl DeliveryStatus {
    /// The row's state after it, or `None` when it would move the row backwards (or
    /// nowhere): statuses arrive out of order and are redelivered.
    pub fn advance(self, current: &str) -> Option<&'static str> {
        let rank = |state: &str| match state {
            "sent" => Some(1),
            "delivered" => Some(2),
            "read" => Some(3),
            _ => None,
        };
        let current = rank(current)?;
        let (next, name) = match self {
            DeliveryStatus::Sent => (1, "sent"),
            DeliveryStatus::Delivered => (2, "delivered"),
            DeliveryStatus::Read => (3, "read"),
            DeliveryStatus::Failed(_) if current == 1 => return Some("failed"),
            DeliveryStatus::Failed(_) => return None,
        };
        (next > current).then_some(name)
    }

    /// The outcome written to `whatsapp_outbox_log` (none for `sent`: the send logged it).
    fn log_outcome(self) -> Option<&'static str> {
        match self {
            DeliveryStatus::Sent => None,
            DeliveryStatus::Delivered => Some("delivered"),
            DeliveryStatus::Read => Some("read"),
            DeliveryStatus::Failed(_) => Some("status_failed"),
        }
    }
}

/// The wamid and status of an opened inbox `status` item (`{"status": {"id", "status",
/// "errors": [{"code"}]}, …}`); `None` for a status kind we do not track (`played`, …).
pub fn parse_status(content: &[u8]) -> Option<(String, DeliveryStatus)> {
    let value: Value = serde_json::from_slice(content).ok()?;
    let status = value.get("status")?;
    let wamid = status.get("id")?.as_str()?.to_owned();
    let kind = match status.get("status")?.as_str()? {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "failed" => DeliveryStatus::Failed(
            status
                .pointer("/errors/0/code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok()),
        ),
        _ => return None,
    };
    Some((wamid, kind))
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pass {
    /// Inbox rows the cursor moved past.
    pub read: u64,
    /// Statuses that moved a row.
    pub applied: u64,
}

/// One pass: up to `limit` inbox rows after the cursor, in one transaction. A status whose
/// wamid matches no row yet and that arrived less than `unmatched_grace` ago stops the pass
/// there (its send may not be recorded yet: the status webhook can beat the notifier's
/// `sent`); an older one is skipped (a message this notifier did not send).
pub async fn pass(
    client: &mut deadpool_postgres::Object,
    vault: &Vault,
    limit: i64,
    unmatched_grace: Duration,
) -> Result<Pass, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let select = tx
        .prepare_cached(
            "SELECT last_transaction_id::text, last_inbox_id FROM whatsapp_inbox_cursors \
              WHERE name = $1 FOR UPDATE",
        )
        .await?;
    // The cursor row is created by the first pass on a database, not attempted every pass.
    let cursor = match tx.query_opt(&select, &[&CURSOR_NAME]).await? {
        Some(cursor) => cursor,
        None => {
            tx.execute(
                "INSERT INTO whatsapp_inbox_cursors (name) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&CURSOR_NAME],
            )
            .await?;
            tx.query_one(&select, &[&CURSOR_NAME]).await?
        }
    };
    let transaction_id: String = cursor.get(0);
    let mut position = InboxPosition {
        transaction_id: transaction_id.parse().unwrap_or(0),
        inbox_id: cursor.get(1),
    };
    let rows = inbox::read_after(&*tx, position, limit).await?;
    // Every status of the page opened first (memory only), then the rows they name read and
    // locked with one statement, the moves decided here, and written with two: three
    // statements a pass instead of three a status (at 500 replies/s the statuses, ~3 a
    // reply, were most of the notifier's statements).
    let opened: Vec<Option<([u8; 32], DeliveryStatus)>> = rows
        .iter()
        .map(|row| {
            (row.kind == InboxKind::Status)
                .then(|| open_status(vault, row))
                .flatten()
        })
        .collect();
    let digests: Vec<&[u8]> = opened
        .iter()
        .flatten()
        .map(|(digest, _)| digest.as_slice())
        .collect();
    let mut targets: HashMap<[u8; 32], (Uuid, String)> = HashMap::new();
    if !digests.is_empty() {
        let statement = tx
            .prepare_cached(
                "SELECT wamid_digest, message_id, state FROM whatsapp_outbox \
                  WHERE wamid_digest = ANY($1::bytea[]) ORDER BY message_id FOR UPDATE",
            )
            .await?;
        for row in tx.query(&statement, &[&digests]).await? {
            if let Ok(digest) = <[u8; 32]>::try_from(row.get::<_, &[u8]>(0)) {
                targets.insert(digest, (row.get(1), row.get(2)));
            }
        }
    }
    let mut done = Pass::default();
    let mut moves: HashMap<Uuid, (&'static str, Option<i32>)> = HashMap::new();
    let mut log = LogRows::default();
    let grace = chrono::Duration::from_std(unmatched_grace).unwrap_or(chrono::Duration::MAX);
    for (row, opened) in rows.iter().zip(&opened) {
        if let Some((digest, status)) = opened {
            match targets.get_mut(digest) {
                None if chrono::Utc::now() - row.received_at < grace => break,
                None => {}
                Some((message_id, current)) => {
                    let next = status.advance(current);
                    let error_code = match status {
                        DeliveryStatus::Failed(code) => *code,
                        _ => None,
                    };
                    if let Some(outcome) = status.log_outcome() {
                        let detail = match next {
                            Some(_) => "status applied".to_owned(),
                            None => {
                                format!("status arrived late: the message is already {current}")
                            }
                        };
                        log.push(*message_id, outcome, error_code, digest, detail);
                    }
                    if let Some(next) = next {
                        let error = moves.get(message_id).and_then(|(_, e)| *e);
                        moves.insert(*message_id, (next, error_code.or(error)));
                        *current = next.to_owned();
                        done.applied += 1;
                    }
                }
            }
        }
        position = row.position;
        done.read += 1;
    }
    if !moves.is_empty() {
        let mut ids = Vec::with_capacity(moves.len());
        let mut states = Vec::with_capacity(moves.len());
        let mut codes = Vec::with_capacity(moves.len());
        for (id, (state, code)) in &moves {
            ids.push(*id);
            states.push(*state);
            codes.push(*code);
        }
        let statement = tx
            .prepare_cached(
                "UPDATE whatsapp_outbox o SET state = m.state, \
                        last_error_code = COALESCE(m.error_code, o.last_error_code), \
                        updated_at = now() \
                   FROM unnest($1::uuid[], $2::text[], $3::int4[]) AS m(message_id, state, error_code) \
                  WHERE o.message_id = m.message_id",
            )
            .await?;
        tx.execute(&statement, &[&ids, &states, &codes]).await?;
    }
    if !log.message_ids.is_empty() {
        let statement = tx
            .prepare_cached(
                "INSERT INTO whatsapp_outbox_log (message_id, outcome, error_code, wamid_digest, detail) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::bytea[], $5::text[])",
            )
            .await?;
        tx.execute(
            &statement,
            &[
                &log.message_ids,
                &log.outcomes,
                &log.error_codes,
                &log.digests,
                &log.details,
            ],
        )
        .await?;
    }
    if done.read > 0 {
        tx.execute(
            "UPDATE whatsapp_inbox_cursors SET last_transaction_id = $2::text::xid8, \
                    last_inbox_id = $3, processed_total = processed_total + $4, \
                    updated_at = now() \
              WHERE name = $1",
            &[
                &CURSOR_NAME,
                &position.transaction_id.to_string(),
                &position.inbox_id,
                &i64::try_from(done.read).unwrap_or(i64::MAX),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// The log rows of a pass, as columns for one `unnest` insert, in arrival order.
#[derive(Default)]
struct LogRows {
    message_ids: Vec<Uuid>,
    outcomes: Vec<&'static str>,
    error_codes: Vec<Option<i32>>,
    digests: Vec<Vec<u8>>,
    details: Vec<String>,
}

impl LogRows {
    fn push(
        &mut self,
        message_id: Uuid,
        outcome: &'static str,
        error_code: Option<i32>,
        digest: &[u8; 32],
        detail: String,
    ) {
        self.message_ids.push(message_id);
        self.outcomes.push(outcome);
        self.error_codes.push(error_code);
        self.digests.push(digest.to_vec());
        self.details.push(detail);
    }
}

/// The wamid digest and status of an inbox `status` row; `None` (logged when it does not
/// open) for one we cannot read or do not track.
fn open_status(vault: &Vault, row: &InboxRow) -> Option<([u8; 32], DeliveryStatus)> {
    let record = SealedRecord {
        master_key_id: row.master_key_id.clone(),
        wrapped_key: row.wrapped_key.clone(),
        sealed: row.sealed.clone(),
    };
    let Ok(content) = vault.open_record(&inbox::seal_context(&row.dedupe_key), &record) else {
        tracing::warn!(
            inbox_id = row.position.inbox_id,
            "a status item does not open"
        );
        return None;
    };
    let (wamid, status) = parse_status(&content)?;
    Some((webhook_ingest::inbox::wamid_digest(vault, &wamid), status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        use DeliveryStatus::*;
        let table: [(&str, DeliveryStatus, Option<&str>); 14] = [
            ("sent", Sent, None),
            ("sent", Delivered, Some("delivered")),
            ("sent", Read, Some("read")),
            ("sent", Failed(Some(131026)), Some("failed")),
            ("delivered", Sent, None),
            ("delivered", Delivered, None),
            ("delivered", Read, Some("read")),
            ("delivered", Failed(None), None),
            ("read", Delivered, None),
            ("read", Sent, None),
            ("read", Failed(None), None),
            ("failed", Read, None),
            ("queued", Delivered, None),
            ("sending", Read, None),
        ];
        for (current, status, expected) in table {
            assert_eq!(status.advance(current), expected, "{current} + {status:?}");
        }
    }

    #[test]
    fn status_items_parse() {
        let item = br#"{"field":"messages","status":{"id":"wamid.X","status":"failed","errors":[{"code":131026,"title":"x"}]}}"#;
        assert_eq!(
            parse_status(item),
            Some(("wamid.X".into(), DeliveryStatus::Failed(Some(131026))))
        );
        let read = br#"{"status":{"id":"wamid.Y","status":"read"}}"#;
        assert_eq!(
            parse_status(read),
            Some(("wamid.Y".into(), DeliveryStatus::Read))
        );
        assert_eq!(
            parse_status(br#"{"status":{"id":"w","status":"played"}}"#),
            None
        );
        assert_eq!(parse_status(b"not json"), None);
    }
}
