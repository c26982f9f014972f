//! Request bodies: the content type, the size limit, and JSON fields read one by one so
//! every error names the field it is about.
//!
//! Bodies are read as raw bytes (the idempotency fingerprint is over those bytes) and parsed
//! here rather than by an extractor, so that we choose the statuses: a body that is not
//! JSON at all is 400; JSON with a missing, mistyped, out-of-range or unknown field is 422
//! with a `field` extension.

use crate::problem::ApiError;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{self, Bytes};
use actix_web::HttpRequest;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Checks that the body is declared as JSON: `application/json`, optionally with
/// `charset=utf-8` (JSON is UTF-8 by definition, RFC 8259 §8.1, so no other charset).
pub fn require_json(content_type: Option<&str>) -> Result<(), ApiError> {
    let content_type = content_type.ok_or(ApiError::UnsupportedMediaType)?;
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    for parameter in parts {
        let (name, value) = parameter
            .split_once('=')
            .ok_or(ApiError::UnsupportedMediaType)?;
        let value = value.trim().trim_matches('"');
        if !(name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")) {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// Reads a JSON body of at most `limit_bytes`. A declared `Content-Length` over the limit is
/// refused before a byte is read; a body that streams past the limit is refused as soon as
/// it does, so an oversize body is never buffered whole.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    limit_bytes: usize,
) -> Result<Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    require_json(content_type)?;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit_bytes as u64) {
        return Err(ApiError::PayloadTooLarge { limit_bytes });
    }
    match payload.to_bytes_limited(limit_bytes).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) => Err(ApiError::MalformedJson(format!(
            "the body could not be read: {error}"
        ))),
        Err(_) => Err(ApiError::PayloadTooLarge { limit_bytes }),
    }
}

/// A JSON object being read field by field. `path` prefixes field names in errors, so a
/// field of a nested object is reported as e.g. `line_items[2].quantity`.
pub struct JsonObject {
    fields: Map<String, Value>,
    path: String,
}

impl JsonObject {
    /// Parses a request body that must be one JSON object.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        match value {
            Value::Object(fields) => Ok(JsonObject {
                fields,
                path: String::new(),
            }),
            _ => Err(ApiError::MalformedJson(
                "the body must be a JSON object".into(),
            )),
        }
    }

    /// Refuses a field that is not one of `known`, like `#[serde(deny_unknown_fields)]`:
    /// a misspelt optional field must not be silently ignored.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), ApiError> {
        match self
            .fields
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            None => Ok(()),
            Some(unknown) => Err(ApiError::invalid_field(
                self.name(unknown),
                format!(
                    "unknown field `{}`; expected one of: {}",
                    self.name(unknown),
                    known.join(", ")
                ),
            )),
        }
    }

    /// Whether the field is present, `null` or not.
    pub fn is_present(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// Whether the field is present and not null.
    pub fn has(&self, name: &str) -> bool {
        self.fields.get(name).is_some_and(|value| !value.is_null())
    }

    /// A field that must be present and not null.
    pub fn required<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        self.optional(name, parse)?.ok_or_else(|| {
            ApiError::invalid_field(
                self.name(name),
                format!("missing field `{}`", self.name(name)),
            )
        })
    }

    /// A field that may be absent; `null` counts as absent.
    pub fn optional<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => parse(value).map(Some).map_err(|message| {
                ApiError::invalid_field(self.name(name), format!("{} {message}", self.name(name)))
            }),
        }
    }

    /// An optional array of at most `items_max` objects, each read by `parse_item`.
    pub fn optional_objects<T>(
        &self,
        name: &str,
        items_max: usize,
        parse_item: impl Fn(JsonObject) -> Result<T, ApiError>,
    ) -> Result<Option<Vec<T>>, ApiError> {
        let items = self.optional(name, |value| match value {
            Value::Array(items) if items.len() <= items_max => Ok(items.clone()),
            Value::Array(_) => Err(format!("must have at most {items_max} items")),
            _ => Err("must be an array".to_owned()),
        })?;
        let Some(items) = items else {
            return Ok(None);
        };
        let mut parsed = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let path = format!("{}[{index}]", self.name(name));
            let Value::Object(fields) = item else {
                return Err(ApiError::invalid_field(
                    &path,
                    format!("{path} must be an object"),
                ));
            };
            parsed.push(parse_item(JsonObject {
                fields,
                path: format!("{path}."),
            })?);
        }
        Ok(Some(parsed))
    }

    /// A field that must be a JSON object, read field by field in turn (errors name its
    /// fields as `name.field`).
    pub fn required_object(&self, name: &str) -> Result<JsonObject, ApiError> {
        let path = self.name(name);
        match self.fields.get(name) {
            None | Some(Value::Null) => Err(ApiError::invalid_field(
                &path,
                format!("missing field `{path}`"),
            )),
            Some(Value::Object(fields)) => Ok(JsonObject {
                fields: fields.clone(),
                path: format!("{path}."),
            }),
            Some(_) => Err(ApiError::invalid_field(
                &path,
                format!("{path} must be an object"),
            )),
        }
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }
}

// Leaf parsers: each says what a value must be, without the field name (the caller adds it).

/// A JSON integer that fits in i64. Floats (`12.5`, `1.0`, `1e3`) are refused: amounts are
/// minor units and points are whole, and a float is how money goes wrong.
pub fn integer(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Ok(integer),
            None if number.is_u64() => Err("is too large".to_owned()),
            None => {
                Err("must be a whole number in range (no decimal point or exponent)".to_owned())
            }
        },
        _ => Err("must be an integer".to_owned()),
    }
}

/// A string of `chars_min..=chars_max` characters with no control characters (they would
/// corrupt receipts, logs and CSV exports).
pub fn text(value: &Value, chars_min: usize, chars_max: usize) -> Result<String, String> {
    let Value::String(text) = value else {
        return Err("must be a string".to_owned());
    };
    let chars = text.chars().count();
    if chars < chars_min || chars > chars_max {
        return Err(format!(
            "must be {chars_min} to {chars_max} characters long"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(text.clone())
}

pub fn uuid(value: &Value) -> Result<Uuid, String> {
    match value {
        Value::String(text) => Uuid::parse_str(text).map_err(|_| "must be a UUID".to_owned()),
        _ => Err("must be a UUID string".to_owned()),
    }
}

/// An RFC 3339 timestamp with an offset, kept to the microsecond the ledger stores.
pub fn timestamp(value: &Value) -> Result<DateTime<Utc>, String> {
    let invalid = || "must be an RFC 3339 timestamp, e.g. 2025-01-31T14:05:00Z".to_owned();
    let Value::String(text) = value else {
        return Err(invalid());
    };
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_type_must_be_json_in_utf_8() {
        for good in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
        ] {
            assert!(require_json(Some(good)).is_ok(), "{good}");
        }
        for bad in [
            None,
            Some(""),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/jsonx"),
            Some("application/json; charset=latin1"),
            Some("application/json; boundary=x"),
            Some("application/json; charset"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert!(
                matches!(require_json(bad), Err(ApiError::UnsupportedMediaType)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn integers_refuse_floats_strings_and_overflow() {
        assert_eq!(integer(&json!(42)), Ok(42));
        assert_eq!(integer(&json!(-3)), Ok(-3));
        assert_eq!(integer(&json!(i64::MAX)), Ok(i64::MAX));
        for bad in [
            json!(12.5),
            json!(1.0),
            json!("12"),
            json!(true),
            json!([1]),
            json!({}),
        ] {
            assert!(integer(&bad).is_err(), "{bad}");
        }
        let overflow: Value = serde_json::from_str("9223372036854775808").unwrap();
        assert_eq!(integer(&overflow), Err("is too large".to_owned()));
        let exponent: Value = serde_json::from_str("1e3").unwrap();
        assert!(integer(&exponent).is_err());
    }

    #[test]
    fn text_counts_characters_and_refuses_control_characters() {
        assert_eq!(
            text(&json!("Free drink"), 1, 200),
            Ok("Free drink".to_owned())
        );
        assert_eq!(text(&json!("ẞ".repeat(3)), 1, 3), Ok("ẞ".repeat(3)));
        assert!(text(&json!(""), 1, 200).is_err());
        assert!(text(&json!("abcd"), 1, 3).is_err());
        assert!(text(&json!("a\u{0}b"), 1, 200).is_err());
        assert!(text(&json!(7), 1, 200).is_err());
    }

    #[test]
    fn timestamps_are_rfc_3339_truncated_to_microseconds() {
        let at = timestamp(&json!("2025-01-31T14:05:00.123456789+01:00")).unwrap();
        assert_eq!(at.to_rfc3339(), "2025-01-31T13:05:00.123456+00:00");
        for bad in [
            json!("2025-01-31"),
            json!("yesterday"),
            json!(1_700_000_000),
            json!("2025-01-31T14:05:00"),
        ] {
            assert!(timestamp(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_body_must_be_a_json_object() {
        for bad in [
            &b""[..],
            b"{",
            b"[1]",
            b"42",
            b"null",
            b"\"text\"",
            b"{\"a\":1}{",
        ] {
            assert!(
                matches!(JsonObject::parse(bad), Err(ApiError::MalformedJson(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn errors_name_the_field_even_when_nested() {
        let object = JsonObject::parse(br#"{"items":[{"n":1},{"n":"x"}],"extra":1}"#).unwrap();
        let error = object.deny_unknown(&["items"]).unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidField { ref field, .. } if field == "extra"),
            "{error:?}"
        );

        let error = object
            .optional_objects("items", 10, |item| item.required("n", integer))
            .unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidField { ref field, ref detail } if field == "items[1].n" && detail.contains("items[1].n")),
            "{error:?}"
        );

        let error = object.required("missing", integer).unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidField { ref field, .. } if field == "missing"),
            "{error:?}"
        );
    }
}
