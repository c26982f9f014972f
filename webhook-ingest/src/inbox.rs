//! From a parsed webhook body to the sealed rows of the inbox (`schema::inbox`). Pure apart
//! from the vault's randomness: no IO.
//!
//! One row per item: each message, each status, each user preference; a change that holds
//! none of these (a template status update, message echoes, value-level errors only) is one
//! `other` row with its whole value; a body that does not parse is one `unparsed` row.
//!
//! What a row reveals without the keys: its kind, the business's `phone_number_id`, the
//! item's timestamp and a de-duplication key made of keyed digests. Everything else (phone
//! numbers, names, texts, and the wamids, whose base64 carries the customer's number) is
//! inside the sealed JSON:
//!
//! ```text
//! {"waba_id": …, "field": …, "metadata": {…}, "contacts": [...], "errors": [...],
//!  "message" | "status" | "user_preference" | "value": {… as received …}}
//! ```

use crate::payload::{Change, Entry, WebhookBatch};
use chrono::{DateTime, Utc};
use schema::inbox::{seal_context, InboxKind, NewInboxItem};
use serde_json::{json, Map, Value};
use vault::{Vault, VaultError};

/// `keyed_digest` purposes: the digests of one purpose are comparable across rows (a status
/// finds its message), those of different purposes are not.
pub const WAMID_DIGEST_PURPOSE: &str = "whatsapp-wamid";
const USER_DIGEST_PURPOSE: &str = "whatsapp-user";
const CHANGE_DIGEST_PURPOSE: &str = "whatsapp-change";
const BODY_DIGEST_PURPOSE: &str = "whatsapp-body";

/// The latest item timestamp stored as such (year 9999); a later or negative one is kept
/// only inside the sealed JSON.
const TIMESTAMP_SECONDS_MAX: i64 = 253_402_300_799;
/// Longest `phone_number_id` stored in the clear (Meta's are about 15 digits).
const PHONE_NUMBER_ID_CHARS_MAX: usize = 128;
/// Longest Meta word (status, preference value, field name) written into a dedupe key.
const KEY_WORD_CHARS_MAX: usize = 40;

/// The keyed digest of a wamid, as stored in `wamid_digest` and in the dedupe keys: how a
/// reader that knows a wamid (the notifier, from a send's response) finds its rows.
pub fn wamid_digest(vault: &Vault, wamid: &str) -> [u8; 32] {
    vault.keyed_digest(WAMID_DIGEST_PURPOSE, wamid.as_bytes())
}

/// The rows of a parsed body, in body order.
pub fn items_of(batch: &WebhookBatch, vault: &Vault) -> Result<Vec<NewInboxItem>, VaultError> {
    let mut items = Vec::new();
    for entry in &batch.entries {
        for change in &entry.changes {
            items_of_change(entry, change, vault, &mut items)?;
        }
    }
    Ok(items)
}

/// The one row of a signed body that does not parse: the body itself, sealed.
pub fn unparsed_item(body: &[u8], vault: &Vault) -> Result<NewInboxItem, VaultError> {
    let dedupe_key = format!(
        "unparsed:{}",
        hex::encode(vault.keyed_digest(BODY_DIGEST_PURPOSE, body))
    );
    sealed_item(
        vault,
        InboxKind::Unparsed,
        dedupe_key,
        None,
        None,
        None,
        body,
    )
}

fn items_of_change(
    entry: &Entry,
    change: &Change,
    vault: &Vault,
    items: &mut Vec<NewInboxItem>,
) -> Result<(), VaultError> {
    let phone_number_id = change
        .metadata
        .as_ref()
        .and_then(|m| m.phone_number_id.as_deref())
        .filter(|id| storable_id(id))
        .map(str::to_owned);
    let envelope = Envelope::of(entry, change);
    for message in &change.messages {
        let wamid = wamid_digest(vault, &message.parsed.id);
        items.push(sealed_item(
            vault,
            InboxKind::Message,
            format!("msg:{}", hex::encode(wamid)),
            Some(wamid),
            phone_number_id.clone(),
            occurred_at(message.parsed.timestamp),
            &envelope.with("message", &message.raw),
        )?);
    }
    for status in &change.statuses {
        let wamid = wamid_digest(vault, &status.parsed.id);
        items.push(sealed_item(
            vault,
            InboxKind::Status,
            format!(
                "status:{}:{}",
                hex::encode(wamid),
                key_word(status.parsed.status.as_str())
            ),
            Some(wamid),
            phone_number_id.clone(),
            occurred_at(status.parsed.timestamp),
            &envelope.with("status", &status.raw),
        )?);
    }
    for preference in &change.user_preferences {
        let parsed = &preference.parsed;
        let user = parsed
            .wa_id
            .as_deref()
            .or(parsed.user_id.as_deref())
            .unwrap_or_default();
        items.push(sealed_item(
            vault,
            InboxKind::Preference,
            format!(
                "pref:{}:{}:{}",
                hex::encode(vault.keyed_digest(USER_DIGEST_PURPOSE, user.as_bytes())),
                parsed.timestamp.map(|t| t.to_string()).unwrap_or_default(),
                key_word(parsed.value.as_str())
            ),
            None,
            phone_number_id.clone(),
            occurred_at(parsed.timestamp),
            &envelope.with("user_preference", &preference.raw),
        )?);
    }
    if change.item_count() == 0 {
        let whole = envelope.with("value", &change.raw_value);
        items.push(sealed_item(
            vault,
            InboxKind::Other,
            format!(
                "change:{}:{}",
                key_word(change.field.as_str()),
                hex::encode(vault.keyed_digest(CHANGE_DIGEST_PURPOSE, &whole))
            ),
            None,
            phone_number_id,
            None,
            &whole,
        )?);
    }
    Ok(())
}

/// What every item of a change is sealed with: where it came from and who the contacts are.
struct Envelope(Map<String, Value>);

impl Envelope {
    fn of(entry: &Entry, change: &Change) -> Envelope {
        let mut map = Map::new();
        map.insert("waba_id".into(), json!(entry.waba_id));
        map.insert("field".into(), json!(change.field.as_str()));
        if let Some(value) = change.raw_value.as_object() {
            for key in ["metadata", "contacts", "errors"] {
                if let Some(part) = value.get(key) {
                    map.insert(key.into(), part.clone());
                }
            }
        }
        Envelope(map)
    }

    /// The envelope with the item under `key`, as JSON bytes: written straight from
    /// references (no copy of the envelope or the item), the item's key last.
    fn with(&self, key: &str, item: &Value) -> Vec<u8> {
        // Serialising `Value`s under string keys cannot fail.
        serde_json::to_vec(&WithItem {
            envelope: &self.0,
            key,
            item,
        })
        .unwrap_or_default()
    }
}

/// An [`Envelope`] and one item, serialised as one JSON object.
struct WithItem<'a> {
    envelope: &'a Map<String, Value>,
    key: &'a str,
    item: &'a Value,
}

impl serde::Serialize for WithItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.envelope.len() + 1))?;
        for (key, value) in self.envelope {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry(self.key, self.item)?;
        map.end()
    }
}

fn sealed_item(
    vault: &Vault,
    kind: InboxKind,
    dedupe_key: String,
    wamid_digest: Option<[u8; 32]>,
    phone_number_id: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    content: &[u8],
) -> Result<NewInboxItem, VaultError> {
    let sealed = vault.seal_record(&seal_context(&dedupe_key), content)?;
    Ok(NewInboxItem {
        kind,
        dedupe_key,
        wamid_digest,
        phone_number_id,
        occurred_at,
        master_key_id: sealed.master_key_id,
        wrapped_key: sealed.wrapped_key,
        sealed: sealed.sealed,
    })
}

fn occurred_at(timestamp: Option<i64>) -> Option<DateTime<Utc>> {
    timestamp
        .filter(|t| (0..=TIMESTAMP_SECONDS_MAX).contains(t))
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// Whether a `phone_number_id` can go in its column as is: bounded, printable, no NUL
/// (which PostgreSQL text refuses). Anything else stays only in the sealed JSON, so no body
/// content can turn the insert into an error Meta would retry for a week.
fn storable_id(id: &str) -> bool {
    (1..=PHONE_NUMBER_ID_CHARS_MAX).contains(&id.chars().count())
        && id.chars().all(|c| !c.is_control())
}

/// A word of Meta's vocabulary (`delivered`, `stop`, `smb_message_echoes`) fit for a
/// dedupe key; anything unexpected becomes `other`.
fn key_word(word: &str) -> &str {
    let fits = (1..=KEY_WORD_CHARS_MAX).contains(&word.len())
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if fits {
        word
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse_value;

    fn vault() -> Vault {
        let key = vault::generate_key_base64().unwrap();
        Vault::from_config(&format!("t:{key}"), &vault::generate_key_base64().unwrap()).unwrap()
    }

    fn body() -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [
            {"field": "messages", "value": {
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": "pn1"},
                "contacts": [{"profile": {"name": "Ada Obi"}, "wa_id": "2348012345678"}],
                "messages": [
                    {"from": "2348012345678", "id": "wamid.ONE", "timestamp": "1700000000",
                     "type": "text", "text": {"body": "secret words"}},
                    {"from": "2348012345678", "id": "wamid.ONE", "timestamp": "1700000000",
                     "type": "text", "text": {"body": "secret words"}}],
                "statuses": [{"id": "wamid.ONE", "status": "read", "timestamp": 1700000001,
                              "recipient_id": "2348012345678"}]}},
            {"field": "user_preferences", "value": {"metadata": {"phone_number_id": "pn1"},
                "user_preferences": [{"wa_id": "2348012345678", "value": "stop",
                                      "timestamp": 1700000002}]}},
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}}]}]})
    }

    #[test]
    fn one_row_per_item_with_digested_keys_and_sealed_content() {
        let vault = vault();
        let batch = parse_value(&body()).unwrap();
        let items = items_of(&batch, &vault).unwrap();
        let kinds: Vec<_> = items.iter().map(|i| i.kind).collect();
        use InboxKind::*;
        assert_eq!(kinds, [Message, Message, Status, Preference, Other]);
        let wamid = hex::encode(wamid_digest(&vault, "wamid.ONE"));
        assert_eq!(items[0].dedupe_key, format!("msg:{wamid}"));
        assert_eq!(
            items[0].dedupe_key, items[1].dedupe_key,
            "a duplicate shares its key"
        );
        assert_eq!(items[2].dedupe_key, format!("status:{wamid}:read"));
        assert!(
            items[3].dedupe_key.starts_with("pref:")
                && items[3].dedupe_key.ends_with(":1700000002:stop")
        );
        assert!(items[4]
            .dedupe_key
            .starts_with("change:message_template_status_update:"));
        assert_eq!(items[0].phone_number_id.as_deref(), Some("pn1"));
        assert_eq!(items[4].phone_number_id, None);
        assert_eq!(
            items[0].occurred_at,
            DateTime::from_timestamp(1_700_000_000, 0)
        );
        for item in &items {
            let visible = format!(
                "{}{:?}{:?}{:?}",
                item.dedupe_key, item.phone_number_id, item.sealed, item.wrapped_key
            );
            for secret in ["2348012345678", "Ada Obi", "secret words", "wamid.ONE"] {
                assert!(!visible.contains(secret), "{secret} visible in {item:?}");
                assert!(!item
                    .sealed
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()));
            }
        }
        // The sealed content opens to the item with its metadata and contacts.
        let record = vault::SealedRecord {
            master_key_id: items[0].master_key_id.clone(),
            wrapped_key: items[0].wrapped_key.clone(),
            sealed: items[0].sealed.clone(),
        };
        let opened: Value = serde_json::from_slice(
            &vault
                .open_record(&seal_context(&items[0].dedupe_key), &record)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(opened["message"]["text"]["body"], "secret words");
        assert_eq!(opened["contacts"][0]["wa_id"], "2348012345678");
        assert_eq!(opened["metadata"]["phone_number_id"], "pn1");
        assert_eq!(opened["waba_id"], "waba");
    }

    #[test]
    fn the_same_body_gives_the_same_keys_and_fresh_ciphertexts() {
        let vault = vault();
        let batch = parse_value(&body()).unwrap();
        let first = items_of(&batch, &vault).unwrap();
        let second = items_of(&batch, &vault).unwrap();
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.dedupe_key, b.dedupe_key);
            assert_ne!(a.sealed, b.sealed);
        }
        let unparsed = unparsed_item(b"{not json", &vault).unwrap();
        assert_eq!(unparsed.kind, InboxKind::Unparsed);
        assert_eq!(
            unparsed.dedupe_key,
            unparsed_item(b"{not json", &vault).unwrap().dedupe_key
        );
        assert_ne!(
            unparsed.dedupe_key,
            unparsed_item(b"{not json}", &vault).unwrap().dedupe_key
        );
    }

    #[test]
    fn hostile_values_cannot_make_the_insert_fail() {
        let vault = vault();
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "w", "changes": [
            {"field": "messages", "value": {
                "metadata": {"phone_number_id": "a\u{0}b"},
                "messages": [{"id": "wamid.X", "timestamp": "99999999999999", "type": "text",
                              "text": {"body": "x"}}],
                "statuses": [{"id": "wamid.X", "status": "x".repeat(500), "timestamp": -5}]}},
            {"field": "y".repeat(1000), "value": null}]}]});
        let items = items_of(&parse_value(&body).unwrap(), &vault).unwrap();
        assert_eq!(items[0].phone_number_id, None);
        assert_eq!(items[0].occurred_at, None);
        assert_eq!(items[1].occurred_at, None);
        assert!(items[1].dedupe_key.ends_with(":other"));
        assert!(items[2].dedupe_key.starts_with("change:other:"));
        assert!(items.iter().all(|i| i.dedupe_key.len() <= 300));
    }
}
