//! The typed model of a WhatsApp Cloud API webhook body, and its parser. Pure: no IO.
//!
//! [`parse`] takes the raw bytes of a body **whose signature was already verified** and
//! returns a [`WebhookBatch`]: every `entry[]`, every `changes[]`, and per change its
//! `metadata`, `contacts`, `messages`, `statuses` and `user_preferences`. Each item keeps
//! the JSON it was parsed from ([`Item::raw`]), which is what gets sealed and stored.
//!
//! Tolerance, because Meta adds fields and kinds without notice (reference §3.7):
//! - unknown fields are ignored; an unknown message `type`, status or change `field` is
//!   kept ([`MessageKind::Unknown`], [`StatusKind::Other`], [`Field::Other`]), never refused;
//! - timestamps are Unix seconds as a string or a number;
//! - `from` may be absent (username users in the BSUID era): the sender is then only the
//!   business-scoped `from_user_id` / `contacts[].user_id`.
//!
//! Strictness: a field we need that has the wrong JSON type (a message `id` that is not a
//! string, a text `body` that is a number) is a [`ParseError`] naming the path, never a
//! panic. Errors carry paths and expectations only, never content, so they can be logged.
//!
//! `Debug` of every type that holds personal data (phone numbers, names, texts) prints
//! only what is safe: ids of the business, kinds, counts.

use serde_json::{Map, Value};
use std::fmt;

/// The only `object` a WhatsApp webhook carries.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// Why a verified body is not a webhook we can read. Paths look like
/// `entry[0].changes[1].value.messages[2].text.body`; no variant holds content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error(
        "the body is not a WhatsApp Business Account webhook (object is not {WHATSAPP_OBJECT:?})"
    )]
    NotWhatsApp,
    #[error("{path}: expected {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    #[error("{path}: missing")]
    Missing { path: String },
}

/// One webhook body: up to 1000 updates over several entries and changes.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookBatch {
    pub entries: Vec<Entry>,
}

/// One `entry[]`: the changes of one WhatsApp Business Account.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `entry[].id`: the WhatsApp Business Account id (not personal data).
    pub waba_id: String,
    pub changes: Vec<Change>,
}

/// What a change is about (`changes[].field`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Inbound messages, statuses of what we sent, value-level errors.
    Messages,
    /// Marketing opt-out / opt-in done in the WhatsApp client.
    UserPreferences,
    /// Anything else (template status, echoes, account updates, …): kept whole, not read.
    Other(String),
}

impl Field {
    fn parse(raw: &str) -> Field {
        match raw {
            "messages" => Field::Messages,
            "user_preferences" => Field::UserPreferences,
            other => Field::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Field::Messages => "messages",
            Field::UserPreferences => "user_preferences",
            Field::Other(other) => other,
        }
    }
}

/// One `changes[]` element. Items are read only for [`Field::Messages`] and
/// [`Field::UserPreferences`]; for other fields `raw` is all there is.
#[derive(Clone, PartialEq)]
pub struct Change {
    pub field: Field,
    pub metadata: Option<Metadata>,
    pub contacts: Vec<Contact>,
    pub messages: Vec<Item<Message>>,
    pub statuses: Vec<Item<Status>>,
    pub user_preferences: Vec<Item<UserPreference>>,
    /// Value-level errors (`value.errors[]`, e.g. 130429 or 131000).
    pub errors: Vec<ErrorDetail>,
    /// The change's `value` as received.
    pub raw_value: Value,
}

impl Change {
    /// The change's items of every kind.
    pub fn item_count(&self) -> usize {
        self.messages.len() + self.statuses.len() + self.user_preferences.len()
    }
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("field", &self.field)
            .field("metadata", &self.metadata)
            .field("contacts", &self.contacts.len())
            .field("messages", &self.messages)
            .field("statuses", &self.statuses)
            .field("user_preferences", &self.user_preferences)
            .field("errors", &self.errors)
            .finish()
    }
}

/// A parsed item and the JSON it came from (sealed as is: nothing is lost when our model
/// does not know a field yet). `Debug` shows only the parsed side, which redacts itself.
#[derive(Clone, PartialEq)]
pub struct Item<T> {
    pub parsed: T,
    pub raw: Value,
}

impl<T: fmt::Debug> fmt::Debug for Item<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parsed.fmt(f)
    }
}

/// `value.metadata`: the business number the change is about. Route by `phone_number_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub display_phone_number: Option<String>,
    pub phone_number_id: Option<String>,
}

/// `value.contacts[]`: who wrote. `wa_id` is a phone number (personal data); `user_id` is
/// the business-scoped user id (BSUID).
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Contact(<redacted>)")
    }
}

/// An inbound message (`value.messages[]`).
#[derive(Clone, PartialEq)]
pub struct Message {
    /// The wamid: the de-duplication key.
    pub id: String,
    /// The sender's phone number (wa_id form); absent for username-only users.
    pub from: Option<String>,
    /// The sender's business-scoped user id, when Meta sends one.
    pub from_user_id: Option<String>,
    pub timestamp: Option<i64>,
    pub context: Option<MessageContext>,
    pub kind: MessageKind,
    /// Message-level errors (on `unsupported` messages and some others).
    pub errors: Vec<ErrorDetail>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind.name())
            .field("has_from", &self.from.is_some())
            .field("has_from_user_id", &self.from_user_id.is_some())
            .field("timestamp", &self.timestamp)
            .field("has_context", &self.context.is_some())
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

/// `messages[].context`: what the message replies to, or that it was forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext {
    /// The wamid replied to (ours, for button and list replies).
    pub id: Option<String>,
    pub forwarded: bool,
    pub frequently_forwarded: bool,
}

/// The kinds of media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Image,
    Audio,
    Video,
    Document,
    Sticker,
}

impl MediaType {
    fn parse(raw: &str) -> Option<MediaType> {
        Some(match raw {
            "image" => MediaType::Image,
            "audio" => MediaType::Audio,
            "video" => MediaType::Video,
            "document" => MediaType::Document,
            "sticker" => MediaType::Sticker,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Audio => "audio",
            MediaType::Video => "video",
            MediaType::Document => "document",
            MediaType::Sticker => "sticker",
        }
    }
}

/// What a message carries, by its `type`.
#[derive(Clone, PartialEq)]
pub enum MessageKind {
    Text {
        body: String,
    },
    /// A tap on a reply button of an interactive message we sent.
    ButtonReply {
        id: String,
        title: String,
    },
    /// A row chosen in an interactive list we sent.
    ListReply {
        id: String,
        title: String,
        description: Option<String>,
    },
    /// An interactive reply of another kind (e.g. `nfm_reply` from a flow), or none given.
    OtherInteractive {
        interactive_type: Option<String>,
    },
    /// A quick-reply button of a template (`type: button`).
    QuickReply {
        payload: Option<String>,
        text: String,
    },
    Media {
        media_type: MediaType,
        id: Option<String>,
        mime_type: Option<String>,
        caption: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    /// A reaction to one of our messages; no emoji (absent or empty) = reaction removed.
    Reaction {
        message_id: Option<String>,
        emoji: Option<String>,
    },
    /// Shared contact cards.
    Contacts {
        count: usize,
    },
    /// e.g. `user_changed_number`, `customer_identity_changed`.
    System {
        system_type: Option<String>,
        body: Option<String>,
        new_wa_id: Option<String>,
    },
    Order {
        catalog_id: Option<String>,
        item_count: usize,
    },
    /// Meta could not deliver the content (`type: unsupported`); `unsupported.type` when given.
    Unsupported {
        unsupported_type: Option<String>,
    },
    /// A `type` this model does not know (e.g. `request_welcome`, `edit`, `revoke`).
    Unknown {
        message_type: String,
    },
}

impl MessageKind {
    /// A short name of the kind, safe to log.
    pub fn name(&self) -> &'static str {
        match self {
            MessageKind::Text { .. } => "text",
            MessageKind::ButtonReply { .. } => "button_reply",
            MessageKind::ListReply { .. } => "list_reply",
            MessageKind::OtherInteractive { .. } => "interactive",
            MessageKind::QuickReply { .. } => "quick_reply",
            MessageKind::Media { media_type, .. } => media_type.as_str(),
            MessageKind::Location { .. } => "location",
            MessageKind::Reaction { .. } => "reaction",
            MessageKind::Contacts { .. } => "contacts",
            MessageKind::System { .. } => "system",
            MessageKind::Order { .. } => "order",
            MessageKind::Unsupported { .. } => "unsupported",
            MessageKind::Unknown { .. } => "unknown",
        }
    }
}

impl fmt::Debug for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageKind::{}(<redacted>)", self.name())
    }
}

/// `statuses[].status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
    /// First play of a voice message.
    Played,
    Other(String),
}

impl StatusKind {
    fn parse(raw: &str) -> StatusKind {
        match raw {
            "sent" => StatusKind::Sent,
            "delivered" => StatusKind::Delivered,
            "read" => StatusKind::Read,
            "failed" => StatusKind::Failed,
            "played" => StatusKind::Played,
            other => StatusKind::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            StatusKind::Sent => "sent",
            StatusKind::Delivered => "delivered",
            StatusKind::Read => "read",
            StatusKind::Failed => "failed",
            StatusKind::Played => "played",
            StatusKind::Other(other) => other,
        }
    }
}

/// A delivery status of a message we sent (`value.statuses[]`).
#[derive(Clone, PartialEq)]
pub struct Status {
    /// The wamid of our message.
    pub id: String,
    pub status: StatusKind,
    pub timestamp: Option<i64>,
    /// A phone number (or a group id): personal data.
    pub recipient_id: Option<String>,
    pub recipient_user_id: Option<String>,
    pub errors: Vec<ErrorDetail>,
    pub conversation: Option<Conversation>,
    pub pricing: Option<Pricing>,
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Status")
            .field("status", &self.status)
            .field("timestamp", &self.timestamp)
            .field("errors", &self.errors)
            .field("conversation", &self.conversation)
            .field("pricing", &self.pricing)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: Option<String>,
    pub expiration_timestamp: Option<i64>,
    pub origin_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    pub billable: Option<bool>,
    pub pricing_model: Option<String>,
    pub category: Option<String>,
    pub pricing_type: Option<String>,
}

/// An error Meta reports (`errors[]` of a status, a message or a change value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub message: Option<String>,
    /// `error_data.details`.
    pub details: Option<String>,
}

/// `user_preferences[].value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreferenceValue {
    /// Stop marketing messages.
    Stop,
    /// Resume marketing messages.
    Resume,
    Other(String),
}

impl PreferenceValue {
    fn parse(raw: &str) -> PreferenceValue {
        match raw {
            "stop" => PreferenceValue::Stop,
            "resume" => PreferenceValue::Resume,
            other => PreferenceValue::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PreferenceValue::Stop => "stop",
            PreferenceValue::Resume => "resume",
            PreferenceValue::Other(other) => other,
        }
    }
}

/// A marketing opt-out or opt-in made in the WhatsApp client (`value.user_preferences[]`).
#[derive(Clone, PartialEq, Eq)]
pub struct UserPreference {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub category: Option<String>,
    pub value: PreferenceValue,
    pub timestamp: Option<i64>,
}

impl fmt::Debug for UserPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPreference")
            .field("category", &self.category)
            .field("value", &self.value)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------------------

/// Parses a verified webhook body (see the module docs).
pub fn parse(body: &[u8]) -> Result<WebhookBatch, ParseError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    parse_owned(root)
}

/// [`parse_value`] of a tree the parser may take apart: each change's `value` is moved into
/// [`Change::raw_value`] instead of copied (the same result, one deep copy fewer per change).
fn parse_owned(mut root: Value) -> Result<WebhookBatch, ParseError> {
    // The borrowed parser checks the shape and gives the same errors; this pass only moves.
    check_root(&root)?;
    let entries = take_array(&mut root, "entry");
    let entries = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| parse_entry_owned(entry, &format!("entry[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(WebhookBatch { entries })
}

/// The array at `key` of an object, moved out (empty when absent or not an array: callers
/// have checked the shape).
fn take_array(value: &mut Value, key: &str) -> Vec<Value> {
    match value.as_object_mut().and_then(|map| map.remove(key)) {
        Some(Value::Array(values)) => values,
        _ => Vec::new(),
    }
}

fn parse_entry_owned(mut entry: Value, path: &str) -> Result<Entry, ParseError> {
    let entry_map = object(&entry, path)?;
    let waba_id = id_like(entry_map, "id", path)?.unwrap_or_default();
    array(entry_map, "changes", path)?;
    let changes = take_array(&mut entry, "changes")
        .into_iter()
        .enumerate()
        .map(|(i, change)| parse_change_owned(change, &format!("{path}.changes[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Entry { waba_id, changes })
}

fn parse_change_owned(mut change: Value, path: &str) -> Result<Change, ParseError> {
    let raw_value = change
        .as_object_mut()
        .and_then(|map| map.remove("value"))
        .unwrap_or(Value::Null);
    change_with_value(object(&change, path)?, raw_value, path)
}

/// Parses an already decoded body.
pub fn parse_value(root: &Value) -> Result<WebhookBatch, ParseError> {
    let entries = check_root(root)?;
    let entries = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| parse_entry(entry, &format!("entry[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(WebhookBatch { entries })
}

/// The root's `entry` array, once the root is a WhatsApp webhook.
fn check_root(root: &Value) -> Result<&Vec<Value>, ParseError> {
    let root = root.as_object().ok_or(ParseError::NotWhatsApp)?;
    match root.get("object") {
        None | Some(Value::Null) => {}
        Some(Value::String(object)) if object == WHATSAPP_OBJECT => {}
        Some(_) => return Err(ParseError::NotWhatsApp),
    }
    match root.get("entry") {
        Some(Value::Array(entries)) => Ok(entries),
        Some(_) => Err(wrong("entry", "an array")),
        None => Err(ParseError::NotWhatsApp),
    }
}

fn parse_entry(entry: &Value, path: &str) -> Result<Entry, ParseError> {
    let entry = object(entry, path)?;
    let waba_id = id_like(entry, "id", path)?.unwrap_or_default();
    let changes = array(entry, "changes", path)?
        .iter()
        .enumerate()
        .map(|(i, change)| parse_change(change, &format!("{path}.changes[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Entry { waba_id, changes })
}

fn parse_change(change: &Value, path: &str) -> Result<Change, ParseError> {
    let change_map = object(change, path)?;
    let raw_value = change_map.get("value").cloned().unwrap_or(Value::Null);
    change_with_value(change_map, raw_value, path)
}

/// A change from its map (for `field`) and its `value`, taken out of it or copied.
fn change_with_value(
    change_map: &Map<String, Value>,
    raw_value: Value,
    path: &str,
) -> Result<Change, ParseError> {
    let field = Field::parse(&string(change_map, "field", path)?.unwrap_or_default());
    let mut parsed = Change {
        field,
        metadata: None,
        contacts: Vec::new(),
        messages: Vec::new(),
        statuses: Vec::new(),
        user_preferences: Vec::new(),
        errors: Vec::new(),
        raw_value: Value::Null,
    };
    if matches!(parsed.field, Field::Messages | Field::UserPreferences) {
        let value_path = format!("{path}.value");
        let value = object(&raw_value, &value_path)?;
        parsed.metadata = optional_object(value, "metadata", &value_path)?
            .map(|m| parse_metadata(m, &format!("{value_path}.metadata")))
            .transpose()?;
        parsed.contacts = items(value, "contacts", &value_path, parse_contact)?;
        parsed.errors = errors(value, &value_path)?;
        if parsed.field == Field::Messages {
            parsed.messages = raw_items(value, "messages", &value_path, parse_message)?;
            parsed.statuses = raw_items(value, "statuses", &value_path, parse_status)?;
        } else {
            parsed.user_preferences =
                raw_items(value, "user_preferences", &value_path, parse_preference)?;
        }
    }
    parsed.raw_value = raw_value;
    Ok(parsed)
}

fn parse_metadata(metadata: &Map<String, Value>, path: &str) -> Result<Metadata, ParseError> {
    Ok(Metadata {
        display_phone_number: id_like(metadata, "display_phone_number", path)?,
        phone_number_id: id_like(metadata, "phone_number_id", path)?,
    })
}

fn parse_contact(contact: &Map<String, Value>, path: &str) -> Result<Contact, ParseError> {
    let profile_name = match optional_object(contact, "profile", path)? {
        Some(profile) => string(profile, "name", &format!("{path}.profile"))?,
        None => None,
    };
    Ok(Contact {
        wa_id: id_like(contact, "wa_id", path)?,
        user_id: string(contact, "user_id", path)?,
        profile_name,
    })
}

fn parse_message(message: &Map<String, Value>, path: &str) -> Result<Message, ParseError> {
    let id = string(message, "id", path)?.ok_or_else(|| missing(path, "id"))?;
    let context = optional_object(message, "context", path)?
        .map(|c| parse_context(c, &format!("{path}.context")))
        .transpose()?;
    let message_type = string(message, "type", path)?.unwrap_or_default();
    Ok(Message {
        id,
        from: id_like(message, "from", path)?,
        from_user_id: string(message, "from_user_id", path)?,
        timestamp: timestamp(message, "timestamp", path)?,
        context,
        kind: parse_kind(message, &message_type, path)?,
        errors: errors(message, path)?,
    })
}

fn parse_context(context: &Map<String, Value>, path: &str) -> Result<MessageContext, ParseError> {
    Ok(MessageContext {
        id: string(context, "id", path)?,
        forwarded: boolean(context, "forwarded", path)?.unwrap_or(false),
        frequently_forwarded: boolean(context, "frequently_forwarded", path)?.unwrap_or(false),
    })
}

/// The body of a message of type `message_type` (at `message.<message_type>`).
fn parse_kind(
    message: &Map<String, Value>,
    message_type: &str,
    path: &str,
) -> Result<MessageKind, ParseError> {
    let body_path = format!("{path}.{message_type}");
    let body = || -> Result<&Map<String, Value>, ParseError> {
        optional_object(message, message_type, path)?.ok_or_else(|| missing(path, message_type))
    };
    if let Some(media_type) = MediaType::parse(message_type) {
        let media = body()?;
        return Ok(MessageKind::Media {
            media_type,
            id: string(media, "id", &body_path)?,
            mime_type: string(media, "mime_type", &body_path)?,
            caption: string(media, "caption", &body_path)?,
        });
    }
    Ok(match message_type {
        "text" => MessageKind::Text {
            body: string(body()?, "body", &body_path)?.unwrap_or_default(),
        },
        "interactive" => match optional_object(message, "interactive", path)? {
            Some(interactive) => parse_interactive(interactive, &body_path)?,
            // Meta sends an interactive message without its body when it could not read it
            // (value-level error 131000).
            None => MessageKind::OtherInteractive {
                interactive_type: None,
            },
        },
        "button" => {
            let button = body()?;
            MessageKind::QuickReply {
                payload: string(button, "payload", &body_path)?,
                text: string(button, "text", &body_path)?.unwrap_or_default(),
            }
        }
        "location" => {
            let location = body()?;
            MessageKind::Location {
                latitude: number(location, "latitude", &body_path)?,
                longitude: number(location, "longitude", &body_path)?,
                name: string(location, "name", &body_path)?,
                address: string(location, "address", &body_path)?,
            }
        }
        "reaction" => {
            let reaction = body()?;
            MessageKind::Reaction {
                message_id: string(reaction, "message_id", &body_path)?,
                emoji: string(reaction, "emoji", &body_path)?.filter(|e| !e.is_empty()),
            }
        }
        "contacts" => MessageKind::Contacts {
            count: array(message, "contacts", path)?.len(),
        },
        "system" => {
            let system = body()?;
            MessageKind::System {
                system_type: string(system, "type", &body_path)?,
                body: string(system, "body", &body_path)?,
                new_wa_id: id_like(system, "wa_id", &body_path)?,
            }
        }
        "order" => {
            let order = body()?;
            MessageKind::Order {
                catalog_id: id_like(order, "catalog_id", &body_path)?,
                item_count: array(order, "product_items", &body_path)?.len(),
            }
        }
        "unsupported" => MessageKind::Unsupported {
            unsupported_type: match optional_object(message, "unsupported", path)? {
                Some(unsupported) => string(unsupported, "type", &body_path)?,
                None => None,
            },
        },
        other => MessageKind::Unknown {
            message_type: other.to_owned(),
        },
    })
}

fn parse_interactive(
    interactive: &Map<String, Value>,
    path: &str,
) -> Result<MessageKind, ParseError> {
    let interactive_type = string(interactive, "type", path)?;
    let reply = |key: &str| -> Result<Option<(String, String, Option<String>)>, ParseError> {
        let reply_path = format!("{path}.{key}");
        let Some(reply) = optional_object(interactive, key, path)? else {
            return Ok(None);
        };
        Ok(Some((
            string(reply, "id", &reply_path)?.ok_or_else(|| missing(&reply_path, "id"))?,
            string(reply, "title", &reply_path)?.unwrap_or_default(),
            string(reply, "description", &reply_path)?,
        )))
    };
    Ok(match interactive_type.as_deref() {
        Some("button_reply") => match reply("button_reply")? {
            Some((id, title, _)) => MessageKind::ButtonReply { id, title },
            None => return Err(missing(path, "button_reply")),
        },
        Some("list_reply") => match reply("list_reply")? {
            Some((id, title, description)) => MessageKind::ListReply {
                id,
                title,
                description,
            },
            None => return Err(missing(path, "list_reply")),
        },
        _ => MessageKind::OtherInteractive { interactive_type },
    })
}

fn parse_status(status: &Map<String, Value>, path: &str) -> Result<Status, ParseError> {
    let conversation = optional_object(status, "conversation", path)?
        .map(|c| {
            let c_path = format!("{path}.conversation");
            Ok::<_, ParseError>(Conversation {
                id: string(c, "id", &c_path)?,
                expiration_timestamp: timestamp(c, "expiration_timestamp", &c_path)?,
                origin_type: match optional_object(c, "origin", &c_path)? {
                    Some(origin) => string(origin, "type", &format!("{c_path}.origin"))?,
                    None => None,
                },
            })
        })
        .transpose()?;
    let pricing = optional_object(status, "pricing", path)?
        .map(|p| {
            let p_path = format!("{path}.pricing");
            Ok::<_, ParseError>(Pricing {
                billable: boolean(p, "billable", &p_path)?,
                pricing_model: string(p, "pricing_model", &p_path)?,
                category: string(p, "category", &p_path)?,
                pricing_type: string(p, "type", &p_path)?,
            })
        })
        .transpose()?;
    Ok(Status {
        id: string(status, "id", path)?.ok_or_else(|| missing(path, "id"))?,
        status: StatusKind::parse(
            &string(status, "status", path)?.ok_or_else(|| missing(path, "status"))?,
        ),
        timestamp: timestamp(status, "timestamp", path)?,
        recipient_id: id_like(status, "recipient_id", path)?,
        recipient_user_id: string(status, "recipient_user_id", path)?,
        errors: errors(status, path)?,
        conversation,
        pricing,
    })
}

fn parse_preference(
    preference: &Map<String, Value>,
    path: &str,
) -> Result<UserPreference, ParseError> {
    Ok(UserPreference {
        wa_id: id_like(preference, "wa_id", path)?,
        user_id: string(preference, "user_id", path)?,
        category: string(preference, "category", path)?,
        value: PreferenceValue::parse(
            &string(preference, "value", path)?.ok_or_else(|| missing(path, "value"))?,
        ),
        timestamp: timestamp(preference, "timestamp", path)?,
    })
}

fn errors(map: &Map<String, Value>, path: &str) -> Result<Vec<ErrorDetail>, ParseError> {
    items(map, "errors", path, |error, path| {
        let details = match optional_object(error, "error_data", path)? {
            Some(data) => string(data, "details", &format!("{path}.error_data"))?,
            None => None,
        };
        Ok(ErrorDetail {
            code: integer(error, "code", path)?,
            title: string(error, "title", path)?,
            message: string(error, "message", path)?,
            details,
        })
    })
}

// ---------------------------------------------------------------------------------------
// Field readers: absent and null are "not given"; any other wrong type is an error.
// ---------------------------------------------------------------------------------------

fn wrong(path: &str, expected: &'static str) -> ParseError {
    ParseError::WrongType {
        path: path.to_owned(),
        expected,
    }
}

fn missing(path: &str, key: &str) -> ParseError {
    ParseError::Missing {
        path: format!("{path}.{key}"),
    }
}

fn present<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, ParseError> {
    value.as_object().ok_or_else(|| wrong(path, "an object"))
}

fn optional_object<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v Map<String, Value>>, ParseError> {
    present(map, key)
        .map(|v| object(v, &format!("{path}.{key}")))
        .transpose()
}

fn array<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'v [Value], ParseError> {
    match present(map, key) {
        None => Ok(&[]),
        Some(Value::Array(values)) => Ok(values),
        Some(_) => Err(wrong(&format!("{path}.{key}"), "an array")),
    }
}

/// Each object of the array at `key`, parsed by `parse`.
fn items<T>(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    parse: impl Fn(&Map<String, Value>, &str) -> Result<T, ParseError>,
) -> Result<Vec<T>, ParseError> {
    array(map, key, path)?
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let item_path = format!("{path}.{key}[{i}]");
            parse(object(value, &item_path)?, &item_path)
        })
        .collect()
}

/// Like [`items`], keeping each item's JSON.
fn raw_items<T>(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    parse: impl Fn(&Map<String, Value>, &str) -> Result<T, ParseError>,
) -> Result<Vec<Item<T>>, ParseError> {
    array(map, key, path)?
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let item_path = format!("{path}.{key}[{i}]");
            Ok(Item {
                parsed: parse(object(value, &item_path)?, &item_path)?,
                raw: value.clone(),
            })
        })
        .collect()
}

fn string(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ParseError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(&format!("{path}.{key}"), "a string")),
    }
}

/// An identifier Meta documents as a string of digits but some producers send as a number
/// (phone numbers, ids): either is accepted, as its decimal text.
fn id_like(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ParseError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(wrong(&format!("{path}.{key}"), "a string")),
    }
}

fn boolean(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, ParseError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong(&format!("{path}.{key}"), "a boolean")),
    }
}

fn integer(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, ParseError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong(&format!("{path}.{key}"), "an integer")),
        Some(_) => Err(wrong(&format!("{path}.{key}"), "an integer")),
    }
}

/// A required number (coordinates): a JSON number, or a string holding one.
fn number(map: &Map<String, Value>, key: &str, path: &str) -> Result<f64, ParseError> {
    let field = format!("{path}.{key}");
    match present(map, key) {
        None => Err(ParseError::Missing { path: field }),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| wrong(&field, "a number")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| wrong(&field, "a number")),
        Some(_) => Err(wrong(&field, "a number")),
    }
}

/// Unix seconds, as Meta's string or as a number.
fn timestamp(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, ParseError> {
    let field = || format!("{path}.{key}");
    match present(map, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong(&field(), "Unix seconds")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| wrong(&field(), "Unix seconds")),
        Some(_) => Err(wrong(&field(), "Unix seconds")),
    }
}

#[cfg(test)]
mod tests;
