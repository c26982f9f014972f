//! The Cloud API's send endpoint: `POST {base_url}/{version}/{phone_number_id}/messages`.
//!
//! Pure parts first: [`message_body`] and [`template_body`] turn what the notifier sends
//! into Meta's JSON; [`parse_response`] turns Meta's answer into a wamid or a [`SendError`].
//! [`MetaClient`] is the one piece of IO. The access token lives in an [`AccessToken`],
//! which never prints.

use ledger_core::broadcast::BroadcastTemplate;
use ledger_core::conversation::OutgoingMessage;
use serde_json::{json, Value};
use std::time::Duration;

/// The bearer token of the Cloud API. `Debug` prints `<redacted>`; the only way out is the
/// `Authorization` header.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    /// Refuses an empty or blank token (every send would be refused with 190).
    pub fn parse(raw: &str) -> Result<AccessToken, EmptyToken> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(EmptyToken);
        }
        Ok(AccessToken(raw.to_owned()))
    }

    /// The token itself, for the `Authorization` header (and this crate's tests) only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the WhatsApp access token is empty")]
pub struct EmptyToken;

/// Where the Cloud API is and how to reach it.
#[derive(Debug, Clone)]
pub struct MetaSettings {
    /// `https://graph.facebook.com` for Meta, the sandbox's address otherwise; no trailing `/`.
    pub base_url: String,
    /// e.g. `v24.0`.
    pub api_version: String,
    /// The platform's token: sends from the shared number. A tenant's own number sends with
    /// its own token (`crate::tokens`).
    pub access_token: AccessToken,
    /// Per send, connection included.
    pub send_timeout: Duration,
}

/// The template sent outside the 24-hour window: the number's `fallback_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub language: String,
}

/// Why a send did not return a wamid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Meta refused it with an error body.
    #[error("Meta error {code} (HTTP {http_status}): {title}")]
    Meta {
        http_status: u16,
        code: u32,
        subcode: Option<u32>,
        /// Meta's `message`, e.g. `(#130429) Rate limit hit` (no personal data).
        title: String,
    },
    /// No answer within the send timeout: the message may or may not have been sent.
    #[error("the send timed out")]
    Timeout,
    /// The connection failed before an answer.
    #[error("connection error: {0}")]
    Connection(String),
    /// An answer that is neither Meta's success nor its error body.
    #[error("unexpected answer (HTTP {http_status})")]
    Unexpected { http_status: u16 },
}

impl SendError {
    /// The Meta code, if Meta answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            SendError::Meta { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Meta's JSON for a free-form message to `to` (the recipient's wa_id, digits).
pub fn message_body(to: &str, message: &OutgoingMessage) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    });
    match message {
        OutgoingMessage::Text(text) => {
            body["type"] = json!("text");
            body["text"] = json!({ "preview_url": false, "body": text.body() });
        }
        OutgoingMessage::Buttons(buttons) => {
            let buttons: Vec<Value> = buttons
                .buttons()
                .iter()
                .map(|b| json!({ "type": "reply", "reply": { "id": b.id(), "title": b.title() } }))
                .collect();
            body["type"] = json!("interactive");
            body["interactive"] = json!({
                "type": "button",
                "body": { "text": message.body() },
                "action": { "buttons": buttons },
            });
        }
        OutgoingMessage::List(list) => {
            let sections: Vec<Value> = list
                .sections()
                .iter()
                .map(|section| {
                    let rows: Vec<Value> = section
                        .rows()
                        .iter()
                        .map(|row| {
                            let mut value = json!({ "id": row.id(), "title": row.title() });
                            if let Some(description) = row.description() {
                                value["description"] = json!(description);
                            }
                            value
                        })
                        .collect();
                    let mut value = json!({ "rows": rows });
                    if let Some(title) = section.title() {
                        value["title"] = json!(title);
                    }
                    value
                })
                .collect();
            body["type"] = json!("interactive");
            body["interactive"] = json!({
                "type": "list",
                "body": { "text": list.body() },
                "action": { "button": list.button(), "sections": sections },
            });
        }
    }
    body
}

/// Meta's JSON for the fallback template. The template takes no parameters: it is the
/// number's approved "you have an update, reply to see it" message, whatever was queued.
pub fn template_body(to: &str, template: &Template) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": { "name": template.name, "language": { "code": template.language } },
    })
}

/// Meta's JSON for a broadcast: its approved template, language and body parameters (text,
/// in order: `{{1}}`, `{{2}}`, …). No `components` when there are no parameters.
pub fn broadcast_body(to: &str, template: &BroadcastTemplate) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": template.name.as_str(),
            "language": { "code": template.language.as_str() },
        },
    });
    if !template.parameters.is_empty() {
        let parameters: Vec<Value> = template
            .parameters
            .iter()
            .map(|p| json!({ "type": "text", "text": p.as_str() }))
            .collect();
        body["template"]["components"] = json!([{ "type": "body", "parameters": parameters }]);
    }
    body
}

/// Meta's answer: the wamid of a 2xx with `messages[0].id`, or the error of its error body.
pub fn parse_response(http_status: u16, body: &[u8]) -> Result<String, SendError> {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let value = value.as_ref();
    if (200..300).contains(&http_status) {
        return value
            .and_then(|v| v.pointer("/messages/0/id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or(SendError::Unexpected { http_status });
    }
    let error = value.and_then(|v| v.get("error"));
    match error.and_then(|e| e.get("code")).and_then(Value::as_u64) {
        Some(code) => {
            let error = error.unwrap_or(&Value::Null);
            Err(SendError::Meta {
                http_status,
                code: u32::try_from(code).unwrap_or(u32::MAX),
                subcode: error
                    .get("error_subcode")
                    .and_then(Value::as_u64)
                    .and_then(|s| u32::try_from(s).ok()),
                title: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .chars()
                    .take(TITLE_CHARS_MAX)
                    .collect(),
            })
        }
        None => Err(SendError::Unexpected { http_status }),
    }
}

/// Longest Meta title kept (it goes into the outbox log, whose `detail` holds 500).
const TITLE_CHARS_MAX: usize = 200;

/// The HTTP client of the send endpoint.
#[derive(Clone)]
pub struct MetaClient {
    http: reqwest::Client,
    settings: MetaSettings,
}

impl MetaClient {
    pub fn new(settings: MetaSettings) -> Result<MetaClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.send_timeout)
            .connect_timeout(settings.send_timeout)
            .build()?;
        Ok(MetaClient { http, settings })
    }

    pub fn send_timeout(&self) -> Duration {
        self.settings.send_timeout
    }

    /// The platform's token (the shared number's).
    pub fn platform_token(&self) -> &AccessToken {
        &self.settings.access_token
    }

    /// Sends one body from `phone_number_id` with `token` (the number's); the wamid on
    /// success.
    #[tracing::instrument(skip_all, fields(phone_number_id = %phone_number_id))]
    pub async fn send(
        &self,
        phone_number_id: &str,
        token: &AccessToken,
        body: &Value,
    ) -> Result<String, SendError> {
        let url = format!(
            "{}/{}/{}/messages",
            self.settings.base_url.trim_end_matches('/'),
            self.settings.api_version,
            phone_number_id
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport_error)?;
        parse_response(status, &bytes)
    }
}

fn transport_error(error: reqwest::Error) -> SendError {
    if error.is_timeout() {
        SendError::Timeout
    } else {
        // Without the URL: it names the phone-number id only, but keep logs minimal.
        SendError::Connection(error.without_url().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::conversation::{Button, Row, Section};
    use whatsapp_sandbox::validate::{validate_send, MessageKind};

    const TO: &str = "2348012345678";

    fn accepted(body: &Value) -> MessageKind {
        let checked = validate_send(&serde_json::to_vec(body).unwrap());
        let send = checked.unwrap_or_else(|e| panic!("the sandbox refused {body}: {e:?}"));
        assert_eq!(send.wa_id, TO);
        send.kind
    }

    #[test]
    fn text_is_meta_text() {
        let body = message_body(TO, &OutgoingMessage::text("Your balance is 120 points."));
        assert_eq!(body["type"], "text");
        assert_eq!(body["text"]["body"], "Your balance is 120 points.");
        assert_eq!(accepted(&body), MessageKind::Text);
    }

    #[test]
    fn buttons_are_interactive_reply_buttons() {
        let message = OutgoingMessage::buttons(
            "What next?",
            vec![
                Button::new("balance", "Balance").unwrap(),
                Button::new("rewards", "Rewards").unwrap(),
            ],
        )
        .unwrap();
        let body = message_body(TO, &message);
        assert_eq!(body["interactive"]["type"], "button");
        assert_eq!(
            body["interactive"]["action"]["buttons"][1],
            json!({"type":"reply","reply":{"id":"rewards","title":"Rewards"}})
        );
        assert_eq!(accepted(&body), MessageKind::Buttons);
    }

    #[test]
    fn lists_are_interactive_lists_with_optional_parts() {
        let rows = vec![
            Row::new("r1", "Free coffee", Some("150 points")).unwrap(),
            Row::new("r2", "Cake", None).unwrap(),
        ];
        let message = OutgoingMessage::list(
            "Pick a reward",
            "Rewards",
            vec![Section::new(Some("Drinks"), rows).unwrap()],
        )
        .unwrap();
        let body = message_body(TO, &message);
        let section = &body["interactive"]["action"]["sections"][0];
        assert_eq!(section["title"], "Drinks");
        assert_eq!(section["rows"][0]["description"], "150 points");
        assert!(section["rows"][1].get("description").is_none());
        assert_eq!(body["interactive"]["action"]["button"], "Rewards");
        assert_eq!(accepted(&body), MessageKind::List);
    }

    #[test]
    fn a_broadcast_is_its_template_with_body_parameters() {
        use ledger_core::broadcast::{TemplateLanguage, TemplateName, TemplateParameter};
        let mut template = BroadcastTemplate {
            name: TemplateName::parse("spring_offer").unwrap(),
            language: TemplateLanguage::parse("en_US").unwrap(),
            parameters: vec![
                TemplateParameter::parse("Ada").unwrap(),
                TemplateParameter::parse("20%").unwrap(),
            ],
        };
        let body = broadcast_body(TO, &template);
        assert_eq!(body["type"], "template");
        assert_eq!(body["template"]["name"], "spring_offer");
        assert_eq!(body["template"]["language"]["code"], "en_US");
        assert_eq!(
            body["template"]["components"],
            json!([{"type": "body", "parameters": [
                {"type": "text", "text": "Ada"}, {"type": "text", "text": "20%"}]}])
        );
        assert_eq!(accepted(&body), MessageKind::Template);
        template.parameters.clear();
        let body = broadcast_body(TO, &template);
        assert!(body["template"].get("components").is_none());
        assert_eq!(accepted(&body), MessageKind::Template);
    }

    #[test]
    fn the_fallback_template_is_a_meta_template() {
        let template = Template {
            name: "loyalty_update".into(),
            language: "en".into(),
        };
        let body = template_body(TO, &template);
        assert_eq!(body["template"]["language"]["code"], "en");
        assert_eq!(accepted(&body), MessageKind::Template);
    }

    #[test]
    fn responses_parse_to_a_wamid_or_meta_error() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"x","wa_id":"1"}],"messages":[{"id":"wamid.ABC"}]}"#;
        assert_eq!(parse_response(200, ok).unwrap(), "wamid.ABC");
        let refused = whatsapp_sandbox::MetaError::from_code(130429)
            .body()
            .to_string();
        match parse_response(400, refused.as_bytes()).unwrap_err() {
            SendError::Meta { code, title, .. } => {
                assert_eq!(code, 130429);
                assert!(title.starts_with("(#130429)"), "{title}");
            }
            other => panic!("{other:?}"),
        }
        let unknown = whatsapp_sandbox::MetaError::unknown_phone_number_id("1")
            .body()
            .to_string();
        let error = parse_response(400, unknown.as_bytes()).unwrap_err();
        assert!(
            matches!(
                error,
                SendError::Meta {
                    code: 100,
                    subcode: Some(33),
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            parse_response(502, b"<html>bad gateway</html>"),
            Err(SendError::Unexpected { http_status: 502 })
        );
        assert_eq!(
            parse_response(200, b"{}"),
            Err(SendError::Unexpected { http_status: 200 })
        );
    }

    #[test]
    fn the_token_never_prints() {
        let token = AccessToken::parse(" secret-token ").unwrap();
        assert!(!format!("{token:?}").contains("secret"));
        assert_eq!(AccessToken::parse("  ").unwrap_err(), EmptyToken);
    }
}
