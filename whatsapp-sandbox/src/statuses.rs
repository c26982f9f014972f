//! The status webhooks of an accepted send: `sent`, `delivered`, `read` (in the configured
//! order), each a Meta-shaped body signed with the app secret and posted to the ingest URL,
//! retried with doubling backoff when the ingest URL does not answer 2xx.

use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::record::{StatusRecord, WebhookDelivery};
use crate::server::Shared;
use crate::validate::MessageKind;
use crate::{BusinessNumber, StatusOrder, STATUS_DELAY_MS_MAX};

/// An accepted send whose statuses are due.
pub(crate) struct SentMessage {
    pub(crate) sequence: u64,
    pub(crate) wamid: String,
    pub(crate) number: BusinessNumber,
    pub(crate) recipient: String,
    pub(crate) kind: MessageKind,
    pub(crate) biz_opaque_callback_data: Option<String>,
}

/// The statuses in the order they are posted, each with its timestamp (Unix seconds). The
/// timestamps follow the customer's clock (sent ≤ delivered ≤ read) whatever the order.
fn plan(order: StatusOrder, sent_at: i64, delay: Duration) -> Vec<(&'static str, i64)> {
    let step = i64::try_from(delay.as_millis()).unwrap_or(0);
    let at = |steps: i64| sent_at + (steps * step) / 1000;
    match order {
        StatusOrder::InOrder => vec![("sent", at(0)), ("delivered", at(1)), ("read", at(2))],
        StatusOrder::ReadBeforeDelivered => {
            vec![("sent", at(0)), ("read", at(2)), ("delivered", at(1))]
        }
        StatusOrder::Unread => vec![("sent", at(0)), ("delivered", at(1))],
    }
}

pub(crate) async fn deliver(shared: Arc<Shared>, message: SentMessage) {
    let options = shared.options();
    let delay = Duration::from_millis(options.status_delay_ms.min(STATUS_DELAY_MS_MAX));
    for (status, timestamp) in plan(options.status_order, Utc::now().timestamp(), delay) {
        tokio::time::sleep(delay).await;
        let body = status_webhook(&message, status, timestamp)
            .to_string()
            .into_bytes();
        let delivery = match shared.config.webhook_url {
            Some(_) => WebhookDelivery::Pending,
            None => WebhookDelivery::NotConfigured,
        };
        let record = StatusRecord {
            status: status.to_owned(),
            timestamp: timestamp.to_string(),
            delivery,
            attempts: 0,
        };
        let Some(index) = shared.store.push_status(message.sequence, record) else {
            return; // the record was cleared: nobody is watching this message any more
        };
        if let Some(url) = &shared.config.webhook_url {
            let (delivery, attempts) = post_with_retries(&shared, url, body).await;
            shared
                .store
                .update_status(message.sequence, index, delivery, attempts);
        }
    }
}

/// Posts one signed body until a 2xx or `webhook_attempts_max` tries.
async fn post_with_retries(shared: &Shared, url: &str, body: Vec<u8>) -> (WebhookDelivery, u32) {
    let signature = webhook_ingest::signature::sign(&shared.config.app_secret, &body);
    let attempts_max = shared.config.webhook_attempts_max.max(1);
    let mut backoff = shared.config.webhook_backoff_initial;
    for attempt in 1..=attempts_max {
        let result = shared
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(webhook_ingest::signature::HEADER_NAME, &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                return (WebhookDelivery::Delivered, attempt)
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), attempt, "status webhook refused")
            }
            Err(error) => tracing::warn!(%error, attempt, "status webhook not delivered"),
        }
        if attempt < attempts_max {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
    (WebhookDelivery::Failed, attempts_max)
}

/// The webhook Meta posts for one status (reference §3.4; v24+: no `conversation`; `pricing`
/// on `sent` and `delivered`).
pub(crate) fn status_webhook(message: &SentMessage, status: &str, timestamp: i64) -> Value {
    let mut entry = json!({
        "id": message.wamid,
        "status": status,
        "timestamp": timestamp.to_string(),
        "recipient_id": message.recipient,
    });
    if status != "read" {
        entry["pricing"] = if message.kind.is_template() {
            json!({ "billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility" })
        } else {
            json!({ "billable": false, "pricing_model": "PMP", "type": "free_customer_service", "category": "service" })
        };
    }
    if let Some(data) = &message.biz_opaque_callback_data {
        entry["biz_opaque_callback_data"] = json!(data);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": message.number.waba_id,
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": message.number.display_phone_number,
                        "phone_number_id": message.number.phone_number_id,
                    },
                    "statuses": [entry],
                },
                "field": "messages",
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_keep_customer_clock_order() {
        let delay = Duration::from_millis(1500);
        assert_eq!(
            plan(StatusOrder::InOrder, 100, delay),
            vec![("sent", 100), ("delivered", 101), ("read", 103)]
        );
        assert_eq!(
            plan(StatusOrder::ReadBeforeDelivered, 100, delay),
            vec![("sent", 100), ("read", 103), ("delivered", 101)]
        );
        assert_eq!(plan(StatusOrder::Unread, 100, delay).len(), 2);
    }
}
