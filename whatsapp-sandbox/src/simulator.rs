//! The customer side: inbound webhooks built exactly as Meta sends them (the shapes of
//! `fixtures/whatsapp/pywa/message.json` `text`, `callback_button.json` `button`,
//! `callback_selection.json`), signed over the exact bytes with the app secret and posted to
//! the ingest URL; and polling the sandbox for the replies.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

use crate::record::{After, Outcome, RecordedMessage};
use crate::validate::parse_recipient;
use crate::{ids, AppSecret, BusinessNumber};

/// Why a simulated customer message did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("`{0}` is not a phone number (optional +, then 7 to 15 digits)")]
    InvalidNumber(String),
    #[error("could not reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not a message list: {source}")]
    BadAnswer {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// One inbound webhook that the ingest URL accepted.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The customer message's fresh id.
    pub wamid: String,
    /// The exact bytes posted (and signed).
    pub body: Vec<u8>,
    /// The `X-Hub-Signature-256` value sent.
    pub signature: String,
    /// The ingest URL's status (2xx).
    pub http_status: u16,
}

/// A customer (or several: each call names the sender) writing to one business number.
#[derive(Debug, Clone)]
pub struct Simulator {
    client: reqwest::Client,
    ingest_url: String,
    app_secret: AppSecret,
    business: BusinessNumber,
    profile_name: String,
    sandbox_url: Option<String>,
}

impl Simulator {
    pub fn new(
        ingest_url: impl Into<String>,
        app_secret: AppSecret,
        business: BusinessNumber,
    ) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            ingest_url: ingest_url.into(),
            app_secret,
            business,
            profile_name: "Sandbox Customer".to_owned(),
            sandbox_url: None,
        }
    }

    /// The `contacts[].profile.name` of the messages.
    pub fn with_profile_name(mut self, name: impl Into<String>) -> Self {
        self.profile_name = name.into();
        self
    }

    /// Also tell this sandbox (`http://host:port`) about each message before posting it, so
    /// its 24-hour window model sees the customer write in. Best effort: a sandbox that is
    /// not running does not stop the message.
    pub fn with_sandbox(mut self, sandbox_url: impl Into<String>) -> Self {
        self.sandbox_url = Some(sandbox_url.into());
        self
    }

    /// A text message, like `message.json`'s `text` case.
    pub async fn say(&self, from: &str, text: &str) -> Result<Inbound, SimulatorError> {
        self.post_message(from, |message| {
            message["type"] = json!("text");
            message["text"] = json!({ "body": text });
        })
        .await
    }

    /// A tap on a reply button of the interactive message `replying_to` (a wamid we sent).
    pub async fn say_button(
        &self,
        from: &str,
        replying_to: Option<&str>,
        id: &str,
        title: &str,
    ) -> Result<Inbound, SimulatorError> {
        let context = self.context(replying_to);
        self.post_message(from, |message| {
            if let Some(context) = context {
                message["context"] = context;
            }
            message["type"] = json!("interactive");
            message["interactive"] =
                json!({ "type": "button_reply", "button_reply": { "id": id, "title": title } });
        })
        .await
    }

    /// A row chosen in the list message `replying_to`.
    pub async fn say_list_reply(
        &self,
        from: &str,
        replying_to: Option<&str>,
        id: &str,
        title: &str,
        description: Option<&str>,
    ) -> Result<Inbound, SimulatorError> {
        let context = self.context(replying_to);
        let mut reply = json!({ "id": id, "title": title });
        if let Some(description) = description {
            reply["description"] = json!(description);
        }
        self.post_message(from, |message| {
            if let Some(context) = context {
                message["context"] = context;
            }
            message["type"] = json!("interactive");
            message["interactive"] = json!({ "type": "list_reply", "list_reply": reply });
        })
        .await
    }

    fn context(&self, replying_to: Option<&str>) -> Option<Value> {
        replying_to.map(|id| json!({ "from": self.business.display_phone_number, "id": id }))
    }

    async fn post_message(
        &self,
        from: &str,
        fill: impl FnOnce(&mut Value),
    ) -> Result<Inbound, SimulatorError> {
        let wa_id =
            parse_recipient(from).map_err(|_| SimulatorError::InvalidNumber(from.to_owned()))?;
        let wamid = ids::wamid();
        let mut message =
            json!({ "from": wa_id, "id": wamid, "timestamp": Utc::now().timestamp().to_string() });
        fill(&mut message);
        let body = inbound_webhook(&self.business, &wa_id, &self.profile_name, message)
            .to_string()
            .into_bytes();
        self.report_activity(&wa_id).await;
        let signature = webhook_ingest::signature::sign(&self.app_secret, &body);
        let http_status =
            post_signed(&self.client, &self.ingest_url, body.clone(), &signature).await?;
        Ok(Inbound {
            wamid,
            body,
            signature,
            http_status,
        })
    }

    async fn report_activity(&self, wa_id: &str) {
        let Some(sandbox_url) = &self.sandbox_url else {
            return;
        };
        let url = format!(
            "{}/sandbox/inbound-activity",
            sandbox_url.trim_end_matches('/')
        );
        let activity = json!({ "from": wa_id, "phone_number_id": self.business.phone_number_id });
        if let Err(error) = self.client.post(&url).json(&activity).send().await {
            tracing::warn!(%error, "could not report the customer's message to the sandbox");
        }
    }
}

/// Posts `body` with its `X-Hub-Signature-256`; the ingest URL's status if 2xx.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    signature: &str,
) -> Result<u16, SimulatorError> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header(webhook_ingest::signature::HEADER_NAME, signature)
        .body(body)
        .send()
        .await
        .map_err(|source| SimulatorError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(SimulatorError::Refused {
            url: url.to_owned(),
            status,
            body,
        });
    }
    Ok(status)
}

/// The envelope Meta wraps one customer message in.
pub fn inbound_webhook(
    business: &BusinessNumber,
    wa_id: &str,
    profile_name: &str,
    message: Value,
) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": business.waba_id,
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": business.display_phone_number,
                        "phone_number_id": business.phone_number_id,
                    },
                    "contacts": [{ "profile": { "name": profile_name }, "wa_id": wa_id }],
                    "messages": [message],
                },
                "field": "messages",
            }],
        }],
    })
}

/// One signed text message from `from` to the business number `to_business_number`
/// (`phone_number_id` its Graph id) posted to `ingest_url`. The WABA id in the envelope is
/// the phone-number id (the ingest routes by `metadata.phone_number_id`).
pub async fn say(
    ingest_url: &str,
    app_secret: &AppSecret,
    from: &str,
    to_business_number: &str,
    phone_number_id: &str,
    text: &str,
) -> Result<Inbound, SimulatorError> {
    let business = BusinessNumber {
        phone_number_id: phone_number_id.to_owned(),
        display_phone_number: to_business_number.trim_start_matches('+').to_owned(),
        waba_id: phone_number_id.to_owned(),
        access_token: None,
    };
    Simulator::new(ingest_url, app_secret.clone(), business)
        .say(from, text)
        .await
}

#[derive(Deserialize)]
struct MessagesPage {
    messages: Vec<RecordedMessage>,
}

/// The sends the sandbox at `sandbox_url` recorded to `to` after `after`, accepted or not.
pub async fn recorded_messages(
    client: &reqwest::Client,
    sandbox_url: &str,
    to: &str,
    after: After,
) -> Result<Vec<RecordedMessage>, SimulatorError> {
    let to = parse_recipient(to).map_err(|_| SimulatorError::InvalidNumber(to.to_owned()))?;
    // Both values are URL-safe: digits, and a sequence or a `Z` RFC 3339 time.
    let url = format!(
        "{}/sandbox/messages?to={to}&after={}",
        sandbox_url.trim_end_matches('/'),
        after.to_query()
    );
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|source| SimulatorError::Unreachable {
            url: url.clone(),
            source,
        })?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        return Err(SimulatorError::Refused { url, status, body });
    }
    let page: MessagesPage = response
        .json()
        .await
        .map_err(|source| SimulatorError::BadAnswer { url, source })?;
    Ok(page.messages)
}

/// How long the replies must be quiet before [`wait_for_replies`] returns what it has.
pub const REPLIES_SETTLE: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls the sandbox for messages accepted for `to` after `after`: returns once at least one
/// arrived and no further one came for [`REPLIES_SETTLE`], or at `timeout` with what there is
/// (possibly nothing).
pub async fn wait_for_replies(
    sandbox_url: &str,
    to: &str,
    after: After,
    timeout: Duration,
) -> Result<Vec<RecordedMessage>, SimulatorError> {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = 0;
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let replies: Vec<RecordedMessage> = recorded_messages(&client, sandbox_url, to, after)
            .await?
            .into_iter()
            .filter(|m| m.outcome == Outcome::Accepted)
            .collect();
        let now = tokio::time::Instant::now();
        if replies.len() != seen {
            seen = replies.len();
            quiet_since = now;
        }
        let settled = seen > 0 && now.duration_since(quiet_since) >= REPLIES_SETTLE;
        if settled || now >= deadline {
            return Ok(replies);
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}
