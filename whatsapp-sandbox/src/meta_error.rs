//! Meta's Graph API error bodies, as the Cloud API answers a refused send:
//!
//! ```json
//! {"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,
//!   "error_data":{"messaging_product":"whatsapp","details":"…"},"fbtrace_id":"A…"}}
//! ```
//!
//! Clients should key on `code` and `error_data.details`, not on the HTTP status (the
//! reference, §5.4); the statuses chosen here are in [`default_http_status`].

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ids;

/// One refusal of a send: the code, the HTTP status it travels with, and Meta's texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaError {
    pub code: u32,
    pub http_status: u16,
    /// Meta's `message`, e.g. `(#100) Invalid parameter`.
    pub message: String,
    /// Meta's `error_data.details`: what exactly was wrong. Absent for auth errors (190).
    pub details: Option<String>,
    /// Graph's deprecated `error_subcode` (only for an unknown phone-number id: 33).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subcode: Option<u32>,
}

impl MetaError {
    /// An error with the known title and details for `code` (or generic ones).
    pub fn from_code(code: u32) -> Self {
        let (title, details) = known_texts(code);
        Self {
            code,
            http_status: default_http_status(code),
            message: format!("(#{code}) {title}"),
            details: details.map(str::to_owned),
            subcode: None,
        }
    }

    /// `(#100) Invalid parameter` with `details` naming the parameter and the rule broken.
    pub fn invalid_parameter(details: impl Into<String>) -> Self {
        Self {
            details: Some(details.into()),
            ..Self::from_code(100)
        }
    }

    /// The 401 of a missing, malformed or unknown access token (Graph's code 190).
    pub fn invalid_token() -> Self {
        Self {
            code: 190,
            http_status: 401,
            message: "Invalid OAuth access token - Cannot parse access token".to_owned(),
            details: None,
            subcode: None,
        }
    }

    /// Graph's answer to a phone-number id this app cannot send from.
    pub fn unknown_phone_number_id(id: &str) -> Self {
        Self {
            code: 100,
            http_status: 400,
            message: format!(
                "Unsupported post request. Object with ID '{id}' does not exist, cannot be \
                 loaded due to missing permissions, or does not support this operation."
            ),
            details: None,
            subcode: Some(33),
        }
    }

    /// The JSON body Meta sends with this error; `fbtrace_id` is fresh each time.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": ids::fbtrace_id(),
        });
        if let Some(details) = &self.details {
            error["error_data"] = json!({ "messaging_product": "whatsapp", "details": details });
        }
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        if matches!(self.code, 1 | 2) {
            error["is_transient"] = json!(true);
        }
        json!({ "error": error })
    }
}

/// The HTTP status the sandbox sends a code with when a fault does not name one. Meta sends
/// most WhatsApp codes (13xxxx, 100, 368) with 400; 190 with 401; the Graph platform codes 1
/// and 2 with 500 and 503. Some sources report 429 for 130429/131056: inject
/// `{"code":130429,"http_status":429}` to test that.
pub fn default_http_status(code: u32) -> u16 {
    match code {
        1 => 500,
        2 => 503,
        190 => 401,
        _ => 400,
    }
}

/// Meta's title and `details` for the codes the notifier must handle (reference §5.5).
fn known_texts(code: u32) -> (&'static str, Option<&'static str>) {
    match code {
        1 => ("An unknown error occurred", Some("Invalid request or possible server error.")),
        2 => ("Service temporarily unavailable", Some("Temporary due to downtime or due to being overloaded.")),
        4 => ("Application request limit reached", Some("The app has reached its API call rate limit.")),
        100 => ("Invalid parameter", Some("Invalid parameter.")),
        190 => ("Invalid OAuth access token - Cannot parse access token", None),
        368 => ("Temporarily blocked for policies violations", Some("The WhatsApp Business Account is restricted from messaging users for violating platform policy.")),
        80007 => ("Rate limit issues", Some("The WhatsApp Business Account has reached its rate limit.")),
        130429 => ("Rate limit hit", Some("Message failed to send because there were too many messages sent from this phone number in a short period of time")),
        130472 => ("User's number is part of an experiment", Some("Failed to send message because this user's phone number is part of an experiment")),
        131000 => ("Something went wrong", Some("Message failed to send due to an unknown error.")),
        131016 => ("Service unavailable", Some("A service is temporarily unavailable.")),
        131026 => ("Message Undeliverable.", Some("Message failed to send because the recipient's phone number is not a WhatsApp phone number, the recipient has not accepted the new Terms of Service, or is using an old WhatsApp version.")),
        131047 => ("Re-engagement message", Some("Message failed to send because more than 24 hours have passed since the customer last replied to this number.")),
        131048 => ("Spam rate limit hit", Some("Message failed to send because there are restrictions on how many messages can be sent from this phone number. This may be because too many previous messages were blocked or flagged as spam.")),
        131049 => ("This message was not delivered to maintain healthy ecosystem engagement.", Some("In order to maintain a healthy ecosystem engagement, the message failed to be delivered.")),
        131050 => ("Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.", Some("The recipient has stopped marketing messages from this business.")),
        131051 => ("Unsupported message type", Some("Message type is currently not supported.")),
        131056 => ("(Business Account, Consumer Account) pair rate limit hit", Some("Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.")),
        131057 => ("Account in maintenance mode", Some("Business account is in maintenance mode.")),
        132000 => ("Number of parameters does not match the expected number of params", Some("The number of variable parameter values does not match the number of variable parameters defined in the template.")),
        132001 => ("Template name does not exist in the translation", Some("The template does not exist in the specified language or has not been approved.")),
        _ => ("Error injected by the WhatsApp sandbox", Some("This error code was injected by the WhatsApp sandbox.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_meta_shape() {
        let body = MetaError::from_code(130429).body();
        assert_eq!(body["error"]["message"], "(#130429) Rate limit hit");
        assert_eq!(body["error"]["type"], "OAuthException");
        assert_eq!(body["error"]["code"], 130429);
        assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");
        assert!(body["error"]["error_data"]["details"]
            .as_str()
            .unwrap()
            .contains("too many messages"));
        assert!(body["error"]["fbtrace_id"].as_str().unwrap().len() >= 20);

        let auth = MetaError::invalid_token();
        assert_eq!(auth.http_status, 401);
        assert!(auth.body()["error"].get("error_data").is_none());
        assert_eq!(
            MetaError::from_code(2).body()["error"]["is_transient"],
            true
        );
    }

    #[test]
    fn default_statuses() {
        let cases = [
            (1, 500),
            (2, 503),
            (190, 401),
            (100, 400),
            (130429, 400),
            (131047, 400),
        ];
        for (code, status) in cases {
            assert_eq!(default_http_status(code), status, "code {code}");
        }
    }
}
