//! What the sandbox remembers: every send it answered (accepted or refused) with its status
//! timeline, the queue of injected faults, and the last inbound message per customer (the
//! 24-hour window). One mutex, never held across an `.await`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::meta_error::{default_http_status, MetaError};
use crate::validate::parse_recipient;

/// Whether the sandbox accepted a send (200 with a wamid) or refused it (a Meta error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Refused,
}

/// How the status webhook of one status fared at the ingest URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDelivery {
    /// Not yet answered 200 (still being tried).
    Pending,
    /// The ingest URL answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
    /// No webhook URL configured: the status exists only here.
    NotConfigured,
}

/// One status of a sent message (`sent`, `delivered`, `read`) as posted to the ingest URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub status: String,
    /// Unix seconds, as in the webhook.
    pub timestamp: String,
    pub delivery: WebhookDelivery,
    pub attempts: u32,
}

/// One `POST …/messages` the sandbox answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedMessage {
    /// Increases by one per recorded send; `after=<sequence>` pages on it.
    pub sequence: u64,
    pub received_at: DateTime<Utc>,
    pub api_version: String,
    pub phone_number_id: String,
    /// `to` as sent, when the body had one.
    pub to: Option<String>,
    /// The recipient's digits (`wa_id`), when `to` was a valid number.
    pub recipient: Option<String>,
    /// The body's `type`.
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    pub outcome: Outcome,
    pub wamid: Option<String>,
    /// The refusal, for `outcome = refused`.
    pub error: Option<MetaError>,
    /// The request body as JSON (a string holding the bytes when they were not JSON).
    pub body: Value,
    pub statuses: Vec<StatusRecord>,
}

impl RecordedMessage {
    /// One line for a person: the text, the interactive body and its choices, or the
    /// template's name.
    pub fn summary(&self) -> String {
        let body = &self.body;
        let str_at = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
        match self.message_type.as_deref().unwrap_or("text") {
            "text" => str_at("/text/body").unwrap_or_default().to_owned(),
            "interactive" => {
                let text = str_at("/interactive/body/text").unwrap_or_default();
                let choices: Vec<&str> = match str_at("/interactive/type") {
                    Some("button") => array_at(body, "/interactive/action/buttons")
                        .filter_map(|b| b.pointer("/reply/title").and_then(Value::as_str))
                        .collect(),
                    _ => array_at(body, "/interactive/action/sections")
                        .flat_map(|s| array_at(s, "/rows"))
                        .filter_map(|r| r.get("title").and_then(Value::as_str))
                        .collect(),
                };
                format!("{text} [{}]", choices.join(" | "))
            }
            "template" => format!("template {}", str_at("/template/name").unwrap_or("?")),
            other => format!("({other} message)"),
        }
    }
}

fn array_at<'a>(value: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// `after=` of `GET /sandbox/messages`: a sequence number or an RFC 3339 instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Sequence(u64),
    Time(DateTime<Utc>),
}

impl After {
    pub fn parse(raw: &str) -> Option<Self> {
        if let Ok(sequence) = raw.parse() {
            return Some(After::Sequence(sequence));
        }
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| After::Time(t.with_timezone(&Utc)))
    }

    /// The query-string form.
    pub fn to_query(self) -> String {
        match self {
            After::Sequence(sequence) => sequence.to_string(),
            After::Time(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }
    }

    fn admits(self, message: &RecordedMessage) -> bool {
        match self {
            After::Sequence(sequence) => message.sequence > sequence,
            After::Time(time) => message.received_at > time,
        }
    }
}

/// Which recorded sends to list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Recipient digits (a leading `+` is ignored).
    pub to: Option<String>,
    pub after: Option<After>,
    pub outcome: Option<Outcome>,
}

/// `POST /sandbox/faults`: what the next matching sends receive instead of a success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// The Meta error code; default 2 (service unavailable) when only a 5xx is given.
    #[serde(default)]
    pub code: Option<u32>,
    /// The HTTP status; default from the code (see [`default_http_status`]).
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Hold the answer this long first. Alone, the send is then *accepted*: a client whose
    /// timeout is shorter sees a timeout for a message that was sent.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// How many matching sends receive it (default 1).
    #[serde(default)]
    pub times: Option<u32>,
    /// Only sends to this recipient (digits, `+` ignored).
    #[serde(default)]
    pub to: Option<String>,
    /// Only sends from this phone-number id.
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// Replaces Meta's `error_data.details`.
    #[serde(default)]
    pub details: Option<String>,
}

pub const FAULT_TIMES_MAX: u32 = 10_000;
pub const FAULT_DELAY_MS_MAX: u64 = 120_000;
pub const FAULTS_QUEUED_MAX: usize = 1_000;

/// A queued fault and how many sends it still applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedFault {
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub remaining: u32,
}

/// What a consumed fault does to one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultAction {
    pub delay: Option<Duration>,
    pub error: Option<MetaError>,
}

impl FaultSpec {
    /// Checks the spec and normalises `to` to digits.
    pub fn parse(mut self) -> Result<Self, String> {
        if self.code.is_none() && self.http_status.is_none() && self.delay_ms.is_none() {
            return Err("a fault needs at least one of code, http_status, delay_ms".into());
        }
        if let Some(status) = self.http_status {
            if !(400..=599).contains(&status) {
                return Err("http_status must be between 400 and 599".into());
            }
            if status < 500 && self.code.is_none() {
                return Err("a 4xx http_status needs a code".into());
            }
        }
        if !(1..=FAULT_TIMES_MAX).contains(&self.times.unwrap_or(1)) {
            return Err(format!("times must be between 1 and {FAULT_TIMES_MAX}"));
        }
        if self.delay_ms.unwrap_or(0) > FAULT_DELAY_MS_MAX {
            return Err(format!("delay_ms must be at most {FAULT_DELAY_MS_MAX}"));
        }
        if let Some(to) = &self.to {
            self.to =
                Some(parse_recipient(to).map_err(|_| "to must be a phone number".to_owned())?);
        }
        Ok(self)
    }

    fn action(&self) -> FaultAction {
        let error = match (self.code, self.http_status) {
            (None, None) => None,
            (code, status) => {
                let code = code.unwrap_or(if status == Some(500) { 1 } else { 2 });
                let mut error = MetaError::from_code(code);
                error.http_status = status.unwrap_or_else(|| default_http_status(code));
                if let Some(details) = &self.details {
                    error.details = Some(details.clone());
                }
                Some(error)
            }
        };
        FaultAction {
            delay: self.delay_ms.map(Duration::from_millis),
            error,
        }
    }

    fn matches(&self, phone_number_id: &str, wa_id: &str) -> bool {
        self.to.as_deref().is_none_or(|to| to == wa_id)
            && self
                .phone_number_id
                .as_deref()
                .is_none_or(|id| id == phone_number_id)
    }
}

/// The sandbox's memory.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    messages_max: usize,
}

#[derive(Default)]
struct Inner {
    messages: VecDeque<RecordedMessage>,
    next_sequence: u64,
    faults: VecDeque<QueuedFault>,
    /// (phone_number_id, wa_id) → when the customer last wrote in.
    last_inbound: HashMap<(String, String), DateTime<Utc>>,
}

impl Store {
    pub(crate) fn new(messages_max: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_sequence: 1,
                ..Inner::default()
            }),
            messages_max: messages_max.max(1),
        }
    }

    /// A poisoned lock only means another request panicked mid-update; the data is plain
    /// records, still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a send under the next sequence number (dropping the oldest beyond the cap).
    pub(crate) fn record(&self, mut message: RecordedMessage) -> u64 {
        let mut inner = self.lock();
        message.sequence = inner.next_sequence;
        message.received_at = Utc::now();
        inner.next_sequence += 1;
        inner.messages.push_back(message);
        while inner.messages.len() > self.messages_max {
            inner.messages.pop_front();
        }
        inner.next_sequence - 1
    }

    pub(crate) fn list(&self, filter: &MessageFilter) -> Vec<RecordedMessage> {
        let to = filter.to.as_deref().map(|t| t.trim_start_matches('+'));
        self.lock()
            .messages
            .iter()
            .filter(|m| to.is_none_or(|to| m.recipient.as_deref() == Some(to)))
            .filter(|m| filter.after.is_none_or(|after| after.admits(m)))
            .filter(|m| filter.outcome.is_none_or(|o| m.outcome == o))
            .cloned()
            .collect()
    }

    /// Forgets every recorded send; sequence numbers keep increasing.
    pub(crate) fn clear_messages(&self) -> usize {
        let mut inner = self.lock();
        let count = inner.messages.len();
        inner.messages.clear();
        count
    }

    pub(crate) fn last_sequence(&self) -> u64 {
        self.lock().next_sequence - 1
    }

    /// Appends a status to a recorded send's timeline; its index, if the send is still held.
    pub(crate) fn push_status(&self, sequence: u64, status: StatusRecord) -> Option<usize> {
        let mut inner = self.lock();
        let message = find_mut(&mut inner.messages, sequence)?;
        message.statuses.push(status);
        Some(message.statuses.len() - 1)
    }

    pub(crate) fn update_status(
        &self,
        sequence: u64,
        index: usize,
        delivery: WebhookDelivery,
        attempts: u32,
    ) {
        let mut inner = self.lock();
        if let Some(status) =
            find_mut(&mut inner.messages, sequence).and_then(|m| m.statuses.get_mut(index))
        {
            status.delivery = delivery;
            status.attempts = attempts;
        }
    }

    pub(crate) fn queue_fault(&self, spec: FaultSpec) -> Result<QueuedFault, String> {
        let spec = spec.parse()?;
        let mut inner = self.lock();
        if inner.faults.len() >= FAULTS_QUEUED_MAX {
            return Err(format!("at most {FAULTS_QUEUED_MAX} faults may be queued"));
        }
        let queued = QueuedFault {
            remaining: spec.times.unwrap_or(1),
            spec,
        };
        inner.faults.push_back(queued.clone());
        Ok(queued)
    }

    pub(crate) fn faults(&self) -> Vec<QueuedFault> {
        self.lock().faults.iter().cloned().collect()
    }

    pub(crate) fn clear_faults(&self) -> usize {
        let mut inner = self.lock();
        let count = inner.faults.len();
        inner.faults.clear();
        count
    }

    /// Consumes one use of the oldest fault matching this send.
    pub(crate) fn take_fault(&self, phone_number_id: &str, wa_id: &str) -> Option<FaultAction> {
        let mut inner = self.lock();
        let index = inner
            .faults
            .iter()
            .position(|f| f.spec.matches(phone_number_id, wa_id))?;
        let fault = &mut inner.faults[index];
        let action = fault.spec.action();
        fault.remaining -= 1;
        if fault.remaining == 0 {
            inner.faults.remove(index);
        }
        Some(action)
    }

    pub(crate) fn note_inbound(&self, phone_number_id: &str, wa_id: &str, at: DateTime<Utc>) {
        let mut inner = self.lock();
        let last = inner
            .last_inbound
            .entry((phone_number_id.to_owned(), wa_id.to_owned()))
            .or_insert(at);
        *last = (*last).max(at);
    }

    pub(crate) fn last_inbound(&self, phone_number_id: &str, wa_id: &str) -> Option<DateTime<Utc>> {
        self.lock()
            .last_inbound
            .get(&(phone_number_id.to_owned(), wa_id.to_owned()))
            .copied()
    }
}

fn find_mut(
    messages: &mut VecDeque<RecordedMessage>,
    sequence: u64,
) -> Option<&mut RecordedMessage> {
    let first = messages.front()?.sequence;
    let index = usize::try_from(sequence.checked_sub(first)?).ok()?;
    messages.get_mut(index).filter(|m| m.sequence == sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(recipient: &str, outcome: Outcome) -> RecordedMessage {
        RecordedMessage {
            sequence: 0,
            received_at: Utc::now(),
            api_version: "v25.0".into(),
            phone_number_id: "1".into(),
            to: Some(format!("+{recipient}")),
            recipient: Some(recipient.into()),
            message_type: Some("text".into()),
            outcome,
            wamid: None,
            error: None,
            body: serde_json::json!({"text":{"body":"hi"}}),
            statuses: Vec::new(),
        }
    }

    #[test]
    fn faults_match_count_down_and_expire() {
        let store = Store::new(10);
        let spec = FaultSpec {
            code: Some(130429),
            http_status: None,
            delay_ms: None,
            times: Some(2),
            to: Some("+2348012345678".into()),
            phone_number_id: None,
            details: None,
        };
        store.queue_fault(spec).unwrap();
        assert_eq!(
            store.take_fault("1", "2340000000000"),
            None,
            "other recipient"
        );
        for _ in 0..2 {
            let action = store.take_fault("1", "2348012345678").unwrap();
            assert_eq!(action.error.unwrap().code, 130429);
        }
        assert_eq!(store.take_fault("1", "2348012345678"), None);
    }

    #[test]
    fn fault_specs_are_checked() {
        let base = FaultSpec {
            code: None,
            http_status: None,
            delay_ms: None,
            times: None,
            to: None,
            phone_number_id: None,
            details: None,
        };
        assert!(base.clone().parse().is_err(), "nothing to inject");
        let five_hundred = FaultSpec {
            http_status: Some(503),
            ..base.clone()
        }
        .parse()
        .unwrap();
        let error = five_hundred.action().error.unwrap();
        assert_eq!((error.code, error.http_status), (2, 503));
        assert!(FaultSpec {
            http_status: Some(429),
            ..base.clone()
        }
        .parse()
        .is_err());
        assert!(FaultSpec {
            http_status: Some(200),
            code: Some(1),
            ..base.clone()
        }
        .parse()
        .is_err());
        assert!(FaultSpec {
            code: Some(1),
            times: Some(0),
            ..base.clone()
        }
        .parse()
        .is_err());
        assert!(FaultSpec {
            delay_ms: Some(FAULT_DELAY_MS_MAX + 1),
            ..base.clone()
        }
        .parse()
        .is_err());
        assert!(FaultSpec {
            code: Some(1),
            to: Some("abc".into()),
            ..base
        }
        .parse()
        .is_err());
    }

    #[test]
    fn filters_and_cap() {
        let store = Store::new(3);
        let a = store.record(message("111111111", Outcome::Accepted));
        store.record(message("222222222", Outcome::Refused));
        store.record(message("111111111", Outcome::Accepted));
        let filter = |to: Option<&str>, after, outcome| MessageFilter {
            to: to.map(str::to_owned),
            after,
            outcome,
        };
        assert_eq!(store.list(&filter(Some("+111111111"), None, None)).len(), 2);
        assert_eq!(
            store
                .list(&filter(None, Some(After::Sequence(a)), None))
                .len(),
            2
        );
        assert_eq!(
            store
                .list(&filter(None, None, Some(Outcome::Refused)))
                .len(),
            1
        );
        store.record(message("333333333", Outcome::Accepted));
        let all = store.list(&MessageFilter::default());
        assert_eq!(all.len(), 3, "the oldest is dropped beyond the cap");
        assert_eq!(all[0].sequence, 2);
        assert_eq!(store.last_sequence(), 4);
    }

    #[test]
    fn after_parses_sequences_and_times() {
        assert_eq!(After::parse("42"), Some(After::Sequence(42)));
        assert!(matches!(
            After::parse("2026-01-02T03:04:05.123456Z"),
            Some(After::Time(_))
        ));
        assert_eq!(After::parse("yesterday"), None);
        let time = After::parse("2026-01-02T03:04:05.123456Z").unwrap();
        assert_eq!(After::parse(&time.to_query()), Some(time));
    }
}
