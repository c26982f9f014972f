//! Validation of a send body (`POST /{version}/{phone_number_id}/messages`) the way the
//! Cloud API does it, with the limits of the reference (§5.2, §6.4). Pure: bytes in, a
//! [`ValidSend`] or a Meta error (`(#100) Invalid parameter` with `details` naming the
//! parameter) out. Lengths are counted in characters (Unicode scalar values).

use serde_json::{Map, Value};
use std::collections::HashSet;

use crate::meta_error::MetaError;

pub const TEXT_BODY_CHARS_MAX: usize = 4096;
pub const BUTTON_BODY_CHARS_MAX: usize = 1024;
pub const LIST_BODY_CHARS_MAX: usize = 4096;
pub const HEADER_TEXT_CHARS_MAX: usize = 60;
pub const FOOTER_TEXT_CHARS_MAX: usize = 60;
pub const REPLY_BUTTONS_MAX: usize = 3;
pub const BUTTON_TITLE_CHARS_MAX: usize = 20;
pub const BUTTON_ID_CHARS_MAX: usize = 256;
pub const LIST_BUTTON_CHARS_MAX: usize = 20;
pub const LIST_SECTIONS_MAX: usize = 10;
pub const LIST_ROWS_MAX: usize = 10;
pub const SECTION_TITLE_CHARS_MAX: usize = 24;
pub const ROW_TITLE_CHARS_MAX: usize = 24;
pub const ROW_DESCRIPTION_CHARS_MAX: usize = 72;
pub const ROW_ID_CHARS_MAX: usize = 200;
pub const TEMPLATE_NAME_CHARS_MAX: usize = 512;
pub const CALLBACK_DATA_CHARS_MAX: usize = 512;
/// E.164 allows at most 15 digits; fewer than 7 is no phone number anywhere.
pub const PHONE_DIGITS_MIN: usize = 7;
pub const PHONE_DIGITS_MAX: usize = 15;

/// The message types Meta accepts that the sandbox does not emulate: answered with 131051.
const NOT_EMULATED_TYPES: [&str; 8] = [
    "audio", "contacts", "document", "image", "location", "reaction", "sticker", "video",
];

/// The kind of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Buttons,
    List,
    Template,
}

impl MessageKind {
    /// The `type` of the send body (`interactive` for buttons and lists).
    pub fn type_name(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Buttons | MessageKind::List => "interactive",
            MessageKind::Template => "template",
        }
    }

    /// Only templates may be sent outside the 24-hour customer-service window.
    pub fn is_template(self) -> bool {
        self == MessageKind::Template
    }
}

/// A send body that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSend {
    /// `to` exactly as sent (Meta echoes it as `contacts[].input`).
    pub to_input: String,
    /// The recipient's digits (Meta's `wa_id`).
    pub wa_id: String,
    pub kind: MessageKind,
    /// Echoed in status webhooks.
    pub biz_opaque_callback_data: Option<String>,
}

type Checked<T> = Result<T, MetaError>;

fn invalid(details: impl Into<String>) -> MetaError {
    MetaError::invalid_parameter(details)
}

/// Validates the raw body of a send.
pub fn validate_send(raw_body: &[u8]) -> Checked<ValidSend> {
    let value: Value = serde_json::from_slice(raw_body)
        .map_err(|_| invalid("The request body is not valid JSON."))?;
    let body = value
        .as_object()
        .ok_or_else(|| invalid("The request body must be a JSON object."))?;
    validate_object(body)
}

fn validate_object(body: &Map<String, Value>) -> Checked<ValidSend> {
    match body.get("messaging_product") {
        None => return Err(invalid("The parameter messaging_product is required.")),
        Some(Value::String(p)) if p == "whatsapp" => {}
        Some(other) => {
            return Err(invalid(format!(
                "Param messaging_product must be one of {{WHATSAPP}} - got {other}."
            )))
        }
    }
    if let Some(recipient_type) = body.get("recipient_type") {
        if recipient_type.as_str() != Some("individual") {
            return Err(invalid(format!(
                "Param recipient_type must be one of {{INDIVIDUAL}} - got {recipient_type}."
            )));
        }
    }
    let to_input = required_str(body, "to", "to")?;
    let wa_id = parse_recipient(to_input)?;
    let biz_opaque_callback_data =
        optional_str(body, "biz_opaque_callback_data", "biz_opaque_callback_data")?;
    if let Some(data) = biz_opaque_callback_data {
        max_chars(data, CALLBACK_DATA_CHARS_MAX, "biz_opaque_callback_data")?;
    }
    if let Some(context) = body.get("context") {
        let context = object(context, "context")?;
        required_str(context, "message_id", "context['message_id']")?;
    }
    // Meta treats a missing `type` as `text`.
    let type_name = match body.get("type") {
        None => "text",
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(invalid(format!(
                "Param type must be a string - got {other}."
            )))
        }
    };
    let kind = match type_name {
        "text" => validate_text(body)?,
        "interactive" => validate_interactive(body)?,
        "template" => validate_template(body)?,
        t if NOT_EMULATED_TYPES.contains(&t) => {
            return Err(MetaError {
                details: Some(format!(
                    "Message type {t} is not supported by the WhatsApp sandbox (it emulates \
                     text, interactive button/list and template)."
                )),
                ..MetaError::from_code(131051)
            })
        }
        other => {
            return Err(invalid(format!(
                "Param type must be one of {{AUDIO, CONTACTS, DOCUMENT, IMAGE, INTERACTIVE, \
                 LOCATION, REACTION, STICKER, TEMPLATE, TEXT, VIDEO}} - got \"{other}\"."
            )))
        }
    };
    Ok(ValidSend {
        to_input: to_input.to_owned(),
        wa_id,
        kind,
        biz_opaque_callback_data: biz_opaque_callback_data.map(str::to_owned),
    })
}

/// `+2348012345678` or `2348012345678` → `2348012345678`. Spaces, dashes and brackets are
/// refused: Meta tolerates some formatting, the notifier should not send any.
pub fn parse_recipient(to: &str) -> Checked<String> {
    let digits = to.strip_prefix('+').unwrap_or(to);
    let well_formed = digits.bytes().all(|b| b.is_ascii_digit())
        && (PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len());
    if !well_formed {
        return Err(invalid(format!(
            "Param to must be a phone number in international format (optional +, then \
             {PHONE_DIGITS_MIN} to {PHONE_DIGITS_MAX} digits) - got \"{to}\"."
        )));
    }
    Ok(digits.to_owned())
}

fn validate_text(body: &Map<String, Value>) -> Checked<MessageKind> {
    let text = object(
        body.get("text")
            .ok_or_else(|| invalid("The parameter text is required."))?,
        "text",
    )?;
    let text_body = required_str(text, "body", "text['body']")?;
    chars_between(text_body, 1, TEXT_BODY_CHARS_MAX, "text['body']")?;
    if let Some(preview) = text.get("preview_url") {
        if !preview.is_boolean() {
            return Err(invalid("Param text['preview_url'] must be a boolean."));
        }
    }
    Ok(MessageKind::Text)
}

fn validate_interactive(body: &Map<String, Value>) -> Checked<MessageKind> {
    let interactive = object(
        body.get("interactive")
            .ok_or_else(|| invalid("The parameter interactive is required."))?,
        "interactive",
    )?;
    let kind = match required_str(interactive, "type", "interactive['type']")? {
        "button" => MessageKind::Buttons,
        "list" => MessageKind::List,
        other => {
            return Err(invalid(format!(
                "Param interactive['type'] must be one of {{BUTTON, LIST}} (the interactive \
                 types the sandbox emulates) - got \"{other}\"."
            )))
        }
    };
    let body_max = if kind == MessageKind::Buttons {
        BUTTON_BODY_CHARS_MAX
    } else {
        LIST_BODY_CHARS_MAX
    };
    let message_body = object(
        interactive
            .get("body")
            .ok_or_else(|| invalid("The parameter interactive['body'] is required."))?,
        "interactive['body']",
    )?;
    chars_between(
        required_str(message_body, "text", "interactive['body']['text']")?,
        1,
        body_max,
        "interactive['body']['text']",
    )?;
    if let Some(header) = interactive.get("header") {
        validate_header(object(header, "interactive['header']")?, kind)?;
    }
    if let Some(footer) = interactive.get("footer") {
        let footer = object(footer, "interactive['footer']")?;
        let text = required_str(footer, "text", "interactive['footer']['text']")?;
        chars_between(
            text,
            1,
            FOOTER_TEXT_CHARS_MAX,
            "interactive['footer']['text']",
        )?;
    }
    let action = object(
        interactive
            .get("action")
            .ok_or_else(|| invalid("The parameter interactive['action'] is required."))?,
        "interactive['action']",
    )?;
    match kind {
        MessageKind::Buttons => validate_buttons(action)?,
        _ => validate_list(action)?,
    }
    Ok(kind)
}

fn validate_header(header: &Map<String, Value>, kind: MessageKind) -> Checked<()> {
    let header_type = required_str(header, "type", "interactive['header']['type']")?;
    match (header_type, kind) {
        ("text", _) => {
            let text = required_str(header, "text", "interactive['header']['text']")?;
            chars_between(text, 1, HEADER_TEXT_CHARS_MAX, "interactive['header']['text']")
        }
        ("image" | "video" | "document", MessageKind::Buttons) => {
            let media = object(
                header.get(header_type).ok_or_else(|| {
                    invalid(format!("The parameter interactive['header']['{header_type}'] is required."))
                })?,
                "interactive['header'][media]",
            )?;
            if media.get("id").and_then(Value::as_str).is_none() && media.get("link").and_then(Value::as_str).is_none() {
                return Err(invalid(format!(
                    "Param interactive['header']['{header_type}'] needs an id or a link."
                )));
            }
            Ok(())
        }
        (other, MessageKind::List) => Err(invalid(format!(
            "Param interactive['header']['type'] must be TEXT for a list message - got \"{other}\"."
        ))),
        (other, _) => Err(invalid(format!(
            "Param interactive['header']['type'] must be one of {{TEXT, IMAGE, VIDEO, DOCUMENT}} - got \"{other}\"."
        ))),
    }
}

fn validate_buttons(action: &Map<String, Value>) -> Checked<()> {
    let buttons = array(
        action.get("buttons").ok_or_else(|| {
            invalid("The parameter interactive['action']['buttons'] is required.")
        })?,
        "interactive['action']['buttons']",
    )?;
    if buttons.is_empty() || buttons.len() > REPLY_BUTTONS_MAX {
        return Err(invalid(format!(
            "Param interactive['action']['buttons'] must have between 1 and {REPLY_BUTTONS_MAX} \
             elements - got {}.",
            buttons.len()
        )));
    }
    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    for (i, button) in buttons.iter().enumerate() {
        let path = format!("interactive['action']['buttons'][{i}]");
        let button = object(button, &path)?;
        if required_str(button, "type", &format!("{path}['type']"))? != "reply" {
            return Err(invalid(format!(
                "Param {path}['type'] must be one of {{REPLY}}."
            )));
        }
        let reply = object(
            button
                .get("reply")
                .ok_or_else(|| invalid(format!("The parameter {path}['reply'] is required.")))?,
            &format!("{path}['reply']"),
        )?;
        let id = required_str(reply, "id", &format!("{path}['reply']['id']"))?;
        chars_between(
            id,
            1,
            BUTTON_ID_CHARS_MAX,
            &format!("{path}['reply']['id']"),
        )?;
        let title = required_str(reply, "title", &format!("{path}['reply']['title']"))?;
        chars_between(
            title,
            1,
            BUTTON_TITLE_CHARS_MAX,
            &format!("{path}['reply']['title']"),
        )?;
        if !ids.insert(id) {
            return Err(invalid(format!("Duplicate button id \"{id}\" in interactive['action']['buttons']: ids must be unique.")));
        }
        if !titles.insert(title) {
            return Err(invalid(format!("Duplicate button title \"{title}\" in interactive['action']['buttons']: titles must be unique.")));
        }
    }
    Ok(())
}

fn validate_list(action: &Map<String, Value>) -> Checked<()> {
    let button = required_str(action, "button", "interactive['action']['button']")?;
    chars_between(
        button,
        1,
        LIST_BUTTON_CHARS_MAX,
        "interactive['action']['button']",
    )?;
    let sections = array(
        action.get("sections").ok_or_else(|| {
            invalid("The parameter interactive['action']['sections'] is required.")
        })?,
        "interactive['action']['sections']",
    )?;
    if sections.is_empty() || sections.len() > LIST_SECTIONS_MAX {
        return Err(invalid(format!(
            "Param interactive['action']['sections'] must have between 1 and {LIST_SECTIONS_MAX} \
             elements - got {}.",
            sections.len()
        )));
    }
    let mut row_ids = HashSet::new();
    let mut rows_total = 0usize;
    for (s, section) in sections.iter().enumerate() {
        let path = format!("interactive['action']['sections'][{s}]");
        let section = object(section, &path)?;
        match optional_str(section, "title", &format!("{path}['title']"))? {
            Some(title) => chars_between(
                title,
                1,
                SECTION_TITLE_CHARS_MAX,
                &format!("{path}['title']"),
            )?,
            None if sections.len() > 1 => {
                return Err(invalid(format!(
                    "The parameter {path}['title'] is required when there is more than one section."
                )))
            }
            None => {}
        }
        let rows = array(
            section
                .get("rows")
                .ok_or_else(|| invalid(format!("The parameter {path}['rows'] is required.")))?,
            &format!("{path}['rows']"),
        )?;
        if rows.is_empty() {
            return Err(invalid(format!(
                "Param {path}['rows'] must have at least 1 element."
            )));
        }
        rows_total += rows.len();
        if rows_total > LIST_ROWS_MAX {
            return Err(invalid(format!(
                "Too many rows: a list message may have at most {LIST_ROWS_MAX} rows in total \
                 across interactive['action']['sections'] - got at least {rows_total}."
            )));
        }
        for (r, row) in rows.iter().enumerate() {
            let path = format!("{path}['rows'][{r}]");
            let row = object(row, &path)?;
            let id = required_str(row, "id", &format!("{path}['id']"))?;
            chars_between(id, 1, ROW_ID_CHARS_MAX, &format!("{path}['id']"))?;
            let title = required_str(row, "title", &format!("{path}['title']"))?;
            chars_between(title, 1, ROW_TITLE_CHARS_MAX, &format!("{path}['title']"))?;
            if let Some(description) =
                optional_str(row, "description", &format!("{path}['description']"))?
            {
                max_chars(
                    description,
                    ROW_DESCRIPTION_CHARS_MAX,
                    &format!("{path}['description']"),
                )?;
            }
            if !row_ids.insert(id) {
                return Err(invalid(format!("Duplicate row id \"{id}\" in interactive['action']['sections']: row ids must be unique.")));
            }
        }
    }
    Ok(())
}

fn validate_template(body: &Map<String, Value>) -> Checked<MessageKind> {
    let template = object(
        body.get("template")
            .ok_or_else(|| invalid("The parameter template is required."))?,
        "template",
    )?;
    let name = required_str(template, "name", "template['name']")?;
    chars_between(name, 1, TEMPLATE_NAME_CHARS_MAX, "template['name']")?;
    let language = object(
        template
            .get("language")
            .ok_or_else(|| invalid("The parameter template['language'] is required."))?,
        "template['language']",
    )?;
    let code = required_str(language, "code", "template['language']['code']")?;
    chars_between(code, 1, 16, "template['language']['code']")?;
    if let Some(components) = template.get("components") {
        for (i, component) in array(components, "template['components']")?
            .iter()
            .enumerate()
        {
            let path = format!("template['components'][{i}]");
            let component = object(component, &path)?;
            required_str(component, "type", &format!("{path}['type']"))?;
            if let Some(parameters) = component.get("parameters") {
                array(parameters, &format!("{path}['parameters']"))?;
            }
        }
    }
    Ok(MessageKind::Template)
}

fn object<'a>(value: &'a Value, path: &str) -> Checked<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| invalid(format!("Param {path} must be a JSON object.")))
}

fn array<'a>(value: &'a Value, path: &str) -> Checked<&'a Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| invalid(format!("Param {path} must be an array.")))
}

fn required_str<'a>(object: &'a Map<String, Value>, key: &str, path: &str) -> Checked<&'a str> {
    optional_str(object, key, path)?
        .ok_or_else(|| invalid(format!("The parameter {path} is required.")))
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Checked<Option<&'a str>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!(
            "Param {path} must be a string - got {other}."
        ))),
    }
}

fn chars_between(value: &str, min: usize, max: usize, path: &str) -> Checked<()> {
    if value.trim().is_empty() && min > 0 {
        return Err(invalid(format!(
            "Param {path} must be at least {min} character(s) long and not blank."
        )));
    }
    max_chars(value, max, path)
}

fn max_chars(value: &str, max: usize, path: &str) -> Checked<()> {
    let count = value.chars().count();
    if count > max {
        return Err(invalid(format!(
            "Param {path} must be at most {max} characters long - got {count}."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(body: &str) -> Value {
        json!({"messaging_product":"whatsapp","to":"+2348012345678","type":"text","text":{"body":body}})
    }

    fn buttons(buttons: Value) -> Value {
        json!({"messaging_product":"whatsapp","to":"2348012345678","type":"interactive",
               "interactive":{"type":"button","body":{"text":"Pick"},"action":{"buttons":buttons}}})
    }

    fn button(id: &str, title: &str) -> Value {
        json!({"type":"reply","reply":{"id":id,"title":title}})
    }

    fn list(button: &str, sections: Value) -> Value {
        json!({"messaging_product":"whatsapp","to":"2348012345678","type":"interactive",
               "interactive":{"type":"list","body":{"text":"Choose"},"action":{"button":button,"sections":sections}}})
    }

    fn rows(n: usize, prefix: &str) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"id":format!("{prefix}{i}"),"title":format!("Row {i}")}))
                .collect(),
        )
    }

    fn template(template: Value) -> Value {
        json!({"messaging_product":"whatsapp","to":"2348012345678","type":"template","template":template})
    }

    fn with(mut value: Value, pointer: &str, replacement: Value) -> Value {
        *value
            .pointer_mut(pointer)
            .expect("pointer exists in the base body") = replacement;
        value
    }

    fn check(value: &Value) -> Result<MessageKind, (u32, String)> {
        validate_send(value.to_string().as_bytes())
            .map(|send| send.kind)
            .map_err(|e| (e.code, e.details.unwrap_or(e.message)))
    }

    /// `Ok(kind)`, or the error code and a fragment of its `details`.
    type Expected = Result<MessageKind, (u32, &'static str)>;

    /// Each row: a name, a body, and what it must give.
    #[test]
    fn validation_table() {
        let long = |n: usize| "x".repeat(n);
        let ok_buttons = buttons(json!([
            button("a", "A"),
            button("b", "B"),
            button("c", "C")
        ]));
        let cases: Vec<(&str, Value, Expected)> = vec![
            ("text 4096 chars", text(&long(4096)), Ok(MessageKind::Text)),
            ("text 4096 multibyte chars", text(&"é".repeat(4096)), Ok(MessageKind::Text)),
            ("text 4097 chars", text(&long(4097)), Err((100, "text['body'] must be at most 4096"))),
            ("text empty", text(""), Err((100, "text['body'] must be at least 1"))),
            ("text missing", json!({"messaging_product":"whatsapp","to":"2348012345678","type":"text"}), Err((100, "text is required"))),
            ("type defaults to text", json!({"messaging_product":"whatsapp","to":"2348012345678","text":{"body":"hi"}}), Ok(MessageKind::Text)),
            ("preview_url not bool", with(text("hi"), "/text", json!({"body":"hi","preview_url":"yes"})), Err((100, "preview_url"))),
            ("messaging_product missing", json!({"to":"2348012345678","type":"text","text":{"body":"hi"}}), Err((100, "messaging_product is required"))),
            ("messaging_product wrong", with(text("hi"), "/messaging_product", json!("sms")), Err((100, "messaging_product must be one of"))),
            ("recipient_type individual", { let mut v = text("hi"); v["recipient_type"] = json!("individual"); v }, Ok(MessageKind::Text)),
            ("recipient_type group", { let mut v = text("hi"); v["recipient_type"] = json!("group"); v }, Err((100, "recipient_type"))),
            ("to missing", json!({"messaging_product":"whatsapp","type":"text","text":{"body":"hi"}}), Err((100, "to is required"))),
            ("to letters", with(text("hi"), "/to", json!("+234abc")), Err((100, "Param to must be a phone number"))),
            ("to too long", with(text("hi"), "/to", json!("1234567890123456")), Err((100, "Param to"))),
            ("to too short", with(text("hi"), "/to", json!("123456")), Err((100, "Param to"))),
            ("to a number", with(text("hi"), "/to", json!(2348012345678u64)), Err((100, "Param to must be a string"))),
            ("unsupported type image", with(text("hi"), "/type", json!("image")), Err((131051, "image is not supported"))),
            ("unknown type", with(text("hi"), "/type", json!("hologram")), Err((100, "Param type must be one of"))),
            ("3 buttons", ok_buttons.clone(), Ok(MessageKind::Buttons)),
            ("0 buttons", buttons(json!([])), Err((100, "between 1 and 3 elements - got 0"))),
            ("4 buttons", buttons(json!([button("a","A"),button("b","B"),button("c","C"),button("d","D")])), Err((100, "between 1 and 3 elements - got 4"))),
            ("button title 20", buttons(json!([button("a", &long(20))])), Ok(MessageKind::Buttons)),
            ("button title 21", buttons(json!([button("a", &long(21))])), Err((100, "['buttons'][0]['reply']['title'] must be at most 20"))),
            ("button id 256", buttons(json!([button(&long(256), "A")])), Ok(MessageKind::Buttons)),
            ("button id 257", buttons(json!([button(&long(257), "A")])), Err((100, "['reply']['id'] must be at most 256"))),
            ("duplicate button ids", buttons(json!([button("a","A"),button("a","B")])), Err((100, "Duplicate button id"))),
            ("duplicate button titles", buttons(json!([button("a","A"),button("b","A")])), Err((100, "Duplicate button title"))),
            ("button type not reply", buttons(json!([{"type":"url","reply":{"id":"a","title":"A"}}])), Err((100, "must be one of {REPLY}"))),
            ("button body 1024", with(ok_buttons.clone(), "/interactive/body/text", json!(long(1024))), Ok(MessageKind::Buttons)),
            ("button body 1025", with(ok_buttons.clone(), "/interactive/body/text", json!(long(1025))), Err((100, "interactive['body']['text'] must be at most 1024"))),
            ("interactive body missing", { let mut v = ok_buttons.clone(); v["interactive"].as_object_mut().unwrap().remove("body"); v }, Err((100, "interactive['body'] is required"))),
            ("header 60", { let mut v = ok_buttons.clone(); v["interactive"]["header"] = json!({"type":"text","text":long(60)}); v }, Ok(MessageKind::Buttons)),
            ("header 61", { let mut v = ok_buttons.clone(); v["interactive"]["header"] = json!({"type":"text","text":long(61)}); v }, Err((100, "interactive['header']['text'] must be at most 60"))),
            ("image header", { let mut v = ok_buttons.clone(); v["interactive"]["header"] = json!({"type":"image","image":{"link":"https://x.example/a.png"}}); v }, Ok(MessageKind::Buttons)),
            ("footer 60", { let mut v = ok_buttons.clone(); v["interactive"]["footer"] = json!({"text":long(60)}); v }, Ok(MessageKind::Buttons)),
            ("footer 61", { let mut v = ok_buttons.clone(); v["interactive"]["footer"] = json!({"text":long(61)}); v }, Err((100, "interactive['footer']['text'] must be at most 60"))),
            ("interactive type cta_url", with(ok_buttons.clone(), "/interactive/type", json!("cta_url")), Err((100, "interactive['type'] must be one of"))),
            ("list 10 rows", list("Rewards", json!([{"title":"A","rows":rows(5,"a")},{"title":"B","rows":rows(5,"b")}])), Ok(MessageKind::List)),
            ("list 11 rows", list("Rewards", json!([{"title":"A","rows":rows(5,"a")},{"title":"B","rows":rows(6,"b")}])), Err((100, "at most 10 rows in total"))),
            ("list 0 sections", list("Rewards", json!([])), Err((100, "sections'] must have between 1 and 10 elements - got 0"))),
            ("list 11 sections", list("Rewards", Value::Array((0..11).map(|i| json!({"title":format!("S{i}"),"rows":[{"id":format!("r{i}"),"title":"x"}]})).collect())), Err((100, "between 1 and 10 elements - got 11"))),
            ("list empty rows", list("Rewards", json!([{"title":"A","rows":[]}])), Err((100, "['rows'] must have at least 1"))),
            ("list button 20", list(&long(20), json!([{"rows":rows(1,"a")}])), Ok(MessageKind::List)),
            ("list button 21", list(&long(21), json!([{"rows":rows(1,"a")}])), Err((100, "interactive['action']['button'] must be at most 20"))),
            ("section title 24", list("R", json!([{"title":long(24),"rows":rows(1,"a")}])), Ok(MessageKind::List)),
            ("section title 25", list("R", json!([{"title":long(25),"rows":rows(1,"a")}])), Err((100, "['sections'][0]['title'] must be at most 24"))),
            ("section title missing with 2 sections", list("R", json!([{"rows":rows(1,"a")},{"title":"B","rows":rows(1,"b")}])), Err((100, "['title'] is required when there is more than one section"))),
            ("row title 24", list("R", json!([{"rows":[{"id":"a","title":long(24)}]}])), Ok(MessageKind::List)),
            ("row title 25", list("R", json!([{"rows":[{"id":"a","title":long(25)}]}])), Err((100, "['rows'][0]['title'] must be at most 24"))),
            ("row description 72", list("R", json!([{"rows":[{"id":"a","title":"A","description":long(72)}]}])), Ok(MessageKind::List)),
            ("row description 73", list("R", json!([{"rows":[{"id":"a","title":"A","description":long(73)}]}])), Err((100, "['description'] must be at most 72"))),
            ("row id 200", list("R", json!([{"rows":[{"id":long(200),"title":"A"}]}])), Ok(MessageKind::List)),
            ("row id 201", list("R", json!([{"rows":[{"id":long(201),"title":"A"}]}])), Err((100, "['rows'][0]['id'] must be at most 200"))),
            ("duplicate row ids", list("R", json!([{"title":"A","rows":[{"id":"x","title":"1"}]},{"title":"B","rows":[{"id":"x","title":"2"}]}])), Err((100, "Duplicate row id"))),
            ("list header image", { let mut v = list("R", json!([{"rows":rows(1,"a")}])); v["interactive"]["header"] = json!({"type":"image","image":{"id":"1"}}); v }, Err((100, "must be TEXT for a list"))),
            ("list body 4096", with(list("R", json!([{"rows":rows(1,"a")}])), "/interactive/body/text", json!(long(4096))), Ok(MessageKind::List)),
            ("list body 4097", with(list("R", json!([{"rows":rows(1,"a")}])), "/interactive/body/text", json!(long(4097))), Err((100, "must be at most 4096"))),
            ("template minimal", template(json!({"name":"points_update","language":{"code":"en_US"}})), Ok(MessageKind::Template)),
            ("template with components", template(json!({"name":"points_update","language":{"code":"en_US"},"components":[{"type":"body","parameters":[{"type":"text","text":"Ana"}]}]})), Ok(MessageKind::Template)),
            ("template name missing", template(json!({"language":{"code":"en_US"}})), Err((100, "template['name'] is required"))),
            ("template language missing", template(json!({"name":"x"})), Err((100, "template['language'] is required"))),
            ("template language code missing", template(json!({"name":"x","language":{"policy":"deterministic"}})), Err((100, "template['language']['code'] is required"))),
            ("template component without type", template(json!({"name":"x","language":{"code":"en"},"components":[{}]})), Err((100, "template['components'][0]['type'] is required"))),
            ("template components not array", template(json!({"name":"x","language":{"code":"en"},"components":{}})), Err((100, "template['components'] must be an array"))),
            ("context without message_id", { let mut v = text("hi"); v["context"] = json!({}); v }, Err((100, "context['message_id'] is required"))),
            ("callback data 513", { let mut v = text("hi"); v["biz_opaque_callback_data"] = json!(long(513)); v }, Err((100, "biz_opaque_callback_data must be at most 512"))),
        ];
        for (name, body, expected) in cases {
            let got = check(&body);
            match (&got, &expected) {
                (Ok(kind), Ok(want)) => assert_eq!(kind, want, "{name}"),
                (Err((code, details)), Err((want_code, fragment))) => {
                    assert_eq!(code, want_code, "{name}: {details}");
                    assert!(
                        details.contains(fragment),
                        "{name}: `{details}` lacks `{fragment}`"
                    );
                }
                _ => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn bodies_that_are_not_objects_are_meta_errors() {
        for raw in [&b""[..], b"null", b"[]", b"\"text\"", b"{", &[0xff, 0xfe]] {
            let error = validate_send(raw).unwrap_err();
            assert_eq!((error.code, error.http_status), (100, 400), "{raw:?}");
        }
    }

    #[test]
    fn recipient_keeps_input_and_strips_plus() {
        let send = validate_send(text("hi").to_string().as_bytes()).unwrap();
        assert_eq!(send.to_input, "+2348012345678");
        assert_eq!(send.wa_id, "2348012345678");
    }
}
