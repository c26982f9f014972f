use super::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The fixture corpus (pywa's sample webhooks, MIT): `shared/` sits beside the repository,
/// as for `tests/pywa_fixtures.rs`. A missing corpus fails the tests, never skips them.
fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/whatsapp/pywa")
}

/// Every case of every fixture file: `(file stem, case name, body bytes)`, in a stable order.
fn fixture_cases() -> Vec<(String, String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("the fixture directory")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let all: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
        for (name, body) in all {
            cases.push((
                stem.clone(),
                name,
                serde_json::to_vec_pretty(&body).unwrap(),
            ));
        }
    }
    cases
}

/// What a batch holds, as short safe strings: `message:<kind>`, `status:<status>`,
/// `preference:<value>`, and `change:<field>` for a change without items.
fn summary(batch: &WebhookBatch) -> Vec<String> {
    let mut out = Vec::new();
    for entry in &batch.entries {
        for change in &entry.changes {
            for message in &change.messages {
                out.push(format!("message:{}", message.parsed.kind.name()));
            }
            for status in &change.statuses {
                out.push(format!("status:{}", status.parsed.status.as_str()));
            }
            for preference in &change.user_preferences {
                out.push(format!("preference:{}", preference.parsed.value.as_str()));
            }
            if change.item_count() == 0 {
                out.push(format!("change:{}", change.field.as_str()));
            }
        }
    }
    out
}

/// The oracle: what each fixture case must parse into.
#[rustfmt::skip]
const EXPECTED: &[(&str, &str, &[&str])] = &[
    ("callback_button", "button", &["message:button_reply"]),
    ("callback_button", "quick_reply", &["message:quick_reply"]),
    ("callback_button", "quick_reply_without_context", &["message:quick_reply"]),
    ("callback_selection", "callback", &["message:list_reply"]),
    ("callback_selection", "description", &["message:list_reply"]),
    ("deleted_message", "revoke", &["message:unknown"]),
    ("edited_message", "image", &["message:unknown"]),
    ("message", "animated_sticker", &["message:sticker"]),
    ("message", "audio", &["message:audio"]),
    ("message", "chosen_location", &["message:location"]),
    ("message", "contacts", &["message:contacts"]),
    ("message", "current_location", &["message:location"]),
    ("message", "document", &["message:document"]),
    ("message", "forwarded", &["message:text"]),
    ("message", "forwarded_many_times", &["message:text"]),
    ("message", "image", &["message:image"]),
    ("message", "interactive_message_with_err", &["message:interactive"]),
    ("message", "media_with_url", &["message:image"]),
    ("message", "order", &["message:order"]),
    ("message", "reaction", &["message:reaction"]),
    ("message", "referral", &["message:text"]),
    ("message", "reply", &["message:text"]),
    ("message", "static_sticker", &["message:sticker"]),
    ("message", "text", &["message:text"]),
    ("message", "unreaction_empty", &["message:reaction"]),
    ("message", "unreaction_no_emoji", &["message:reaction"]),
    ("message", "unsupported", &["message:unsupported"]),
    ("message", "unsupported_with_type", &["message:unsupported"]),
    ("message", "video", &["message:video"]),
    ("message", "voice", &["message:audio"]),
    ("message_status", "delivered", &["status:delivered"]),
    ("message_status", "failed", &["status:failed"]),
    ("message_status", "group", &["status:read"]),
    ("message_status", "played", &["status:played"]),
    ("message_status", "read", &["status:read"]),
    ("message_status", "sent", &["status:sent"]),
    ("message_status", "with_tracker", &["status:sent"]),
    ("outgoing_message", "delete", &["change:smb_message_echoes"]),
    ("outgoing_message", "edit", &["change:smb_message_echoes"]),
    ("outgoing_message", "text", &["change:smb_message_echoes"]),
    ("system", "identity_change", &["message:system"]),
    ("system", "phone_number_change", &["message:system"]),
    ("user_marketing_preferences", "resume", &["preference:resume"]),
    ("user_marketing_preferences", "signup", &["preference:signup"]),
];

#[test]
fn every_fixture_case_parses_into_the_expected_kinds() {
    let cases = fixture_cases();
    assert!(
        cases.len() >= 40,
        "the fixture corpus is missing ({} cases)",
        cases.len()
    );
    let mut seen = Vec::new();
    for (file, name, body) in &cases {
        let batch = parse(body).unwrap_or_else(|e| panic!("{file}/{name}: {e}"));
        let expected = EXPECTED
            .iter()
            .find(|(f, n, _)| f == file && n == name)
            .unwrap_or_else(|| panic!("{file}/{name} has no expectation in EXPECTED"));
        assert_eq!(summary(&batch), expected.2, "{file}/{name}");
        // Every item keeps its raw JSON, and every change of these samples names its number.
        for change in batch.entries.iter().flat_map(|e| &e.changes) {
            assert!(
                change
                    .metadata
                    .as_ref()
                    .and_then(|m| m.phone_number_id.as_ref())
                    .is_some()
                    || matches!(change.field, Field::Other(_)),
                "{file}/{name}: no phone_number_id"
            );
            for message in &change.messages {
                assert_eq!(message.raw["id"].as_str(), Some(message.parsed.id.as_str()));
            }
        }
        seen.push((file.as_str(), name.as_str()));
    }
    for (file, name, _) in EXPECTED {
        assert!(
            seen.contains(&(file, name)),
            "{file}/{name} expected but not in the corpus"
        );
    }
}

fn fixture(file: &str, name: &str) -> WebhookBatch {
    let (_, _, body) = fixture_cases()
        .into_iter()
        .find(|(f, n, _)| f == file && n == name)
        .unwrap();
    parse(&body).unwrap()
}

fn only_message(batch: &WebhookBatch) -> &Message {
    &batch.entries[0].changes[0].messages[0].parsed
}

#[test]
fn fixture_contents_are_extracted() {
    let text = fixture("message", "text");
    let change = &text.entries[0].changes[0];
    assert_eq!(change.field, Field::Messages);
    assert_eq!(
        change.metadata,
        Some(Metadata {
            display_phone_number: Some("972123456789".into()),
            phone_number_id: Some("1122334455667".into()),
        })
    );
    assert_eq!(change.contacts[0].wa_id.as_deref(), Some("972987654321"));
    assert_eq!(
        change.contacts[0].user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(
        change.contacts[0].profile_name.as_deref(),
        Some("Test Name")
    );
    let message = only_message(&text);
    assert_eq!(message.id, "wamid.xyzxyz");
    assert_eq!(message.from.as_deref(), Some("972987654321"));
    assert_eq!(message.timestamp, Some(1697043223));
    assert!(
        message.kind
            == MessageKind::Text {
                body: "Body Text".into()
            }
    );

    let button = fixture("callback_button", "button");
    assert!(
        only_message(&button).kind
            == MessageKind::ButtonReply {
                id: "callback_data".into(),
                title: "title".into()
            }
    );
    assert_eq!(
        only_message(&button)
            .context
            .as_ref()
            .and_then(|c| c.id.as_deref()),
        Some("wamid.xyzxyz")
    );
    let list = fixture("callback_selection", "description");
    assert!(matches!(
        &only_message(&list).kind,
        MessageKind::ListReply {
            description: Some(_),
            ..
        }
    ));
    let quick = fixture("callback_button", "quick_reply");
    assert!(matches!(
        &only_message(&quick).kind,
        MessageKind::QuickReply {
            payload: Some(_),
            ..
        }
    ));
    let image = fixture("message", "image");
    assert!(matches!(
        &only_message(&image).kind,
        MessageKind::Media {
            media_type: MediaType::Image,
            id: Some(_),
            mime_type: Some(_),
            ..
        }
    ));
    let location = fixture("message", "current_location");
    assert!(matches!(only_message(&location).kind,
        MessageKind::Location { latitude, .. } if (latitude - 12.25089).abs() < 1e-9));
    assert!(only_message(&location).context.as_ref().unwrap().forwarded);
    let unreaction = fixture("message", "unreaction_empty");
    assert!(matches!(
        &only_message(&unreaction).kind,
        MessageKind::Reaction { emoji: None, .. }
    ));
    let unsupported = fixture("message", "unsupported_with_type");
    assert!(
        only_message(&unsupported).kind
            == MessageKind::Unsupported {
                unsupported_type: Some("pool".into())
            }
    );
    assert_eq!(only_message(&unsupported).errors[0].code, Some(131051));
    let system = fixture("system", "phone_number_change");
    assert!(matches!(&only_message(&system).kind,
        MessageKind::System { system_type: Some(t), new_wa_id: Some(_), .. } if t == "user_changed_number"));
    let order = fixture("message", "order");
    assert!(matches!(
        only_message(&order).kind,
        MessageKind::Order { item_count: 3, .. }
    ));
    let revoke = fixture("deleted_message", "revoke");
    assert!(
        only_message(&revoke).kind
            == MessageKind::Unknown {
                message_type: "revoke".into()
            }
    );
    let with_err = fixture("message", "interactive_message_with_err");
    assert_eq!(with_err.entries[0].changes[0].errors[0].code, Some(131000));

    let failed = fixture("message_status", "failed");
    let status = &failed.entries[0].changes[0].statuses[0].parsed;
    assert_eq!(status.status, StatusKind::Failed);
    assert_eq!(status.id, "wamid.xyzxyz");
    assert_eq!(status.timestamp, Some(1689380458));
    assert_eq!(status.recipient_id.as_deref(), Some("972987654321"));
    assert_eq!(status.errors[0].code, Some(130472));
    assert!(status.errors[0].details.is_some());

    let resume = fixture("user_marketing_preferences", "resume");
    let preference = &resume.entries[0].changes[0].user_preferences[0].parsed;
    assert_eq!(preference.value, PreferenceValue::Resume);
    assert_eq!(preference.timestamp, Some(1731705721));
    assert_eq!(preference.category.as_deref(), Some("marketing_messages"));
}

fn envelope(changes: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]})
}

fn messages_change(value: Value) -> Value {
    json!([{ "field": "messages", "value": value }])
}

#[test]
fn a_sender_with_only_a_business_scoped_user_id_is_accepted() {
    let body = envelope(messages_change(json!({
        "metadata": {"phone_number_id": "42"},
        "contacts": [{"profile": {"username": "@ada"}, "user_id": "US.1234"}],
        "messages": [{"from_user_id": "US.1234", "id": "wamid.A", "timestamp": 1700000000,
                      "type": "text", "text": {"body": "points"}}]
    })));
    let batch = parse_value(&body).unwrap();
    let change = &batch.entries[0].changes[0];
    let message = &change.messages[0].parsed;
    assert_eq!(message.from, None);
    assert_eq!(message.from_user_id.as_deref(), Some("US.1234"));
    assert_eq!(message.timestamp, Some(1700000000));
    assert_eq!(change.contacts[0].wa_id, None);
    assert_eq!(change.contacts[0].user_id.as_deref(), Some("US.1234"));
}

#[test]
fn several_entries_changes_and_items_are_all_read() {
    let change = |n: u32| {
        json!({"field": "messages", "value": {
        "metadata": {"phone_number_id": format!("pn{n}")},
        "messages": [
            {"from": "1", "id": format!("wamid.{n}a"), "type": "text", "text": {"body": "a"}},
            {"from": "1", "id": format!("wamid.{n}b"), "type": "reaction",
             "reaction": {"message_id": "wamid.x", "emoji": "👍"}}],
        "statuses": [{"id": format!("wamid.{n}s"), "status": "delivered", "timestamp": "1"}]}})
    };
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "w1", "changes": [change(1), change(2)]},
        {"id": "w2", "changes": [change(3), {"field": "account_update", "value": {"x": 1}}]},
    ]});
    let batch = parse_value(&body).unwrap();
    assert_eq!(batch.entries.len(), 2);
    assert_eq!(batch.entries[1].waba_id, "w2");
    assert_eq!(
        summary(&batch),
        ["message:text", "message:reaction", "status:delivered"]
            .repeat(3)
            .into_iter()
            .map(str::to_owned)
            .chain(["change:account_update".to_owned()])
            .collect::<Vec<_>>()
    );
}

#[test]
fn unknown_fields_and_kinds_are_kept_not_refused() {
    let body = envelope(json!([
        {"field": "messages", "new_top_level": {"a": [1, 2]}, "value": {
            "metadata": {"phone_number_id": "1", "brand_new": true},
            "messages": [
                {"id": "wamid.1", "type": "request_welcome", "surprise": 5},
                {"id": "wamid.2", "type": "text", "text": {"body": "hi", "extra": null},
                 "context": {"from": "1", "id": "wamid.0", "referred_product": {}}},
                {"id": "wamid.3", "type": "unsupported"}],
            "statuses": [{"id": "wamid.9", "status": "accepted", "new": []}]}},
        {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
    ]));
    let batch = parse_value(&body).unwrap();
    assert_eq!(
        summary(&batch),
        [
            "message:unknown",
            "message:text",
            "message:unsupported",
            "status:accepted",
            "change:message_template_status_update"
        ]
    );
}

#[test]
fn wrong_types_in_needed_fields_are_typed_errors_with_paths() {
    let text = |text: Value| {
        envelope(messages_change(json!({"messages": [
        {"id": "wamid.1", "type": "text", "text": text}]})))
    };
    let cases: Vec<(&str, Value, ParseError)> = vec![
        (
            "text body a number",
            text(json!({"body": 5})),
            ParseError::WrongType {
                path: "entry[0].changes[0].value.messages[0].text.body".into(),
                expected: "a string",
            },
        ),
        (
            "text not an object",
            text(json!("hi")),
            ParseError::WrongType {
                path: "entry[0].changes[0].value.messages[0].text".into(),
                expected: "an object",
            },
        ),
        (
            "message id missing",
            envelope(messages_change(json!({"messages": [{"type": "text"}]}))),
            ParseError::Missing {
                path: "entry[0].changes[0].value.messages[0].id".into(),
            },
        ),
        (
            "message id a number",
            envelope(messages_change(json!({"messages": [{"id": 7}]}))),
            ParseError::WrongType {
                path: "entry[0].changes[0].value.messages[0].id".into(),
                expected: "a string",
            },
        ),
        (
            "messages not an array",
            envelope(messages_change(json!({"messages": {}}))),
            ParseError::WrongType {
                path: "entry[0].changes[0].value.messages".into(),
                expected: "an array",
            },
        ),
        (
            "bad timestamp",
            envelope(messages_change(json!({"statuses": [
            {"id": "w", "status": "sent", "timestamp": "yesterday"}]}))),
            ParseError::WrongType {
                path: "entry[0].changes[0].value.statuses[0].timestamp".into(),
                expected: "Unix seconds",
            },
        ),
        (
            "status missing",
            envelope(messages_change(json!({"statuses": [{"id": "w"}]}))),
            ParseError::Missing {
                path: "entry[0].changes[0].value.statuses[0].status".into(),
            },
        ),
        (
            "error code a string",
            envelope(messages_change(json!({"statuses": [
            {"id": "w", "status": "failed", "errors": [{"code": "131047"}]}]}))),
            ParseError::WrongType {
                path: "entry[0].changes[0].value.statuses[0].errors[0].code".into(),
                expected: "an integer",
            },
        ),
        (
            "value not an object",
            envelope(messages_change(json!([1]))),
            ParseError::WrongType {
                path: "entry[0].changes[0].value".into(),
                expected: "an object",
            },
        ),
        (
            "button_reply without body",
            envelope(messages_change(json!({"messages": [
            {"id": "w", "type": "interactive", "interactive": {"type": "button_reply"}}]}))),
            ParseError::Missing {
                path: "entry[0].changes[0].value.messages[0].interactive.button_reply".into(),
            },
        ),
        (
            "location without latitude",
            envelope(messages_change(json!({"messages": [
            {"id": "w", "type": "location", "location": {"longitude": 1}}]}))),
            ParseError::Missing {
                path: "entry[0].changes[0].value.messages[0].location.latitude".into(),
            },
        ),
        (
            "preference without value",
            envelope(json!([{"field": "user_preferences",
            "value": {"user_preferences": [{"wa_id": "1"}]}}])),
            ParseError::Missing {
                path: "entry[0].changes[0].value.user_preferences[0].value".into(),
            },
        ),
        (
            "entry not an array",
            json!({"object": "whatsapp_business_account", "entry": {}}),
            ParseError::WrongType {
                path: "entry".into(),
                expected: "an array",
            },
        ),
        (
            "another object",
            json!({"object": "page", "entry": []}),
            ParseError::NotWhatsApp,
        ),
        (
            "no entry",
            json!({"object": "whatsapp_business_account"}),
            ParseError::NotWhatsApp,
        ),
        ("not an object", json!([1, 2]), ParseError::NotWhatsApp),
    ];
    for (name, body, expected) in cases {
        assert_eq!(parse_value(&body), Err(expected.clone()), "{name}");
        // The bytes parser takes the tree apart instead of copying it: same errors.
        let bytes = serde_json::to_vec(&body).unwrap();
        assert_eq!(parse(&bytes), Err(expected), "{name}: from bytes");
    }
}

#[test]
fn bytes_that_are_not_json_are_a_typed_error() {
    for body in [
        &b""[..],
        b"{",
        b"not json",
        b"{\"entry\": [}",
        &[0xff, 0xfe, 0x00],
    ] {
        assert!(
            matches!(parse(body), Err(ParseError::NotJson { .. })),
            "{body:?}"
        );
    }
}

#[test]
fn timestamps_and_ids_accept_strings_and_numbers() {
    let body = envelope(messages_change(json!({
        "metadata": {"phone_number_id": 106540352242922u64, "display_phone_number": "+1 555"},
        "messages": [{"id": "w", "from": 16505551234u64, "timestamp": "  1700000000 ",
                      "type": "text", "text": {"body": "x"}}]})));
    let batch = parse_value(&body).unwrap();
    let change = &batch.entries[0].changes[0];
    assert_eq!(
        change.metadata.as_ref().unwrap().phone_number_id.as_deref(),
        Some("106540352242922")
    );
    assert_eq!(
        change.messages[0].parsed.from.as_deref(),
        Some("16505551234")
    );
    assert_eq!(change.messages[0].parsed.timestamp, Some(1700000000));
}

#[test]
fn debug_output_holds_no_personal_data() {
    for (file, name, body) in fixture_cases() {
        let rendered = format!("{:?}", parse(&body).unwrap());
        for secret in [
            "972987654321",
            "16505551234",
            "Test Name",
            "Body Text",
            "Chandler",
        ] {
            assert!(
                !rendered.contains(secret),
                "{file}/{name}: Debug shows {secret:?}"
            );
        }
    }
}

#[test]
fn parse_errors_hold_no_content() {
    let body = envelope(messages_change(json!({"messages": [
        {"id": "w", "type": "text", "text": {"body": ["2348012345678"]}}]})));
    let error = parse_value(&body).unwrap_err();
    assert!(!error.to_string().contains("2348012345678"));
    assert!(!format!("{error:?}").contains("2348012345678"));
}
