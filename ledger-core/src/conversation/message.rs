//! Outgoing WhatsApp messages that are within Meta's limits by construction.
//!
//! Every text field is *fitted* when it is built: surrounding white space trimmed, titles
//! folded onto one line, and anything longer than its limit cut at a character boundary
//! and ended with `…`. Counts (buttons, rows, sections), ids and uniqueness are *checked*:
//! breaking them is a programming error, reported as a [`LimitError`], never silently
//! repaired, because dropping a button changes what the customer can do.
//!
//! Lengths are counted in UTF-16 code units. Meta documents its limits in "characters"
//! without saying which; UTF-16 units are never fewer than Unicode scalar values, so a
//! text within the limit by this count is within it by either. Cutting happens between
//! scalar values, so a multi-scalar grapheme (a flag, a skin-tone emoji) may lose its tail;
//! the text stays valid UTF-8.
//!
//! The types deserialize through the same constructors, so a message read back from an
//! event is as limited as one built here.

use serde::{Deserialize, Serialize};

/// Text message body (`text.body`).
pub const TEXT_BODY_MAX: usize = 4096;
/// Body of an interactive message. Meta allows 1024 for reply buttons and 4096 for lists;
/// one smaller limit for both keeps the renderers simple.
pub const INTERACTIVE_BODY_MAX: usize = 1024;
/// Reply buttons per message.
pub const BUTTONS_MAX: usize = 3;
/// Reply-button title.
pub const BUTTON_TITLE_MAX: usize = 20;
/// Reply-button id.
pub const BUTTON_ID_MAX: usize = 256;
/// The label of the button that opens a list.
pub const LIST_BUTTON_MAX: usize = 20;
/// Sections in a list.
pub const SECTIONS_MAX: usize = 10;
/// Rows in a list, over all its sections.
pub const ROWS_MAX: usize = 10;
/// Section title.
pub const SECTION_TITLE_MAX: usize = 24;
/// Row title.
pub const ROW_TITLE_MAX: usize = 24;
/// Row id.
pub const ROW_ID_MAX: usize = 200;
/// Row description.
pub const ROW_DESCRIPTION_MAX: usize = 72;

/// A count, id or uniqueness rule of Meta's that a message would break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("a reply-button message needs 1 to {BUTTONS_MAX} buttons, not {0}")]
    ButtonCount(usize),
    #[error("a list needs 1 to {ROWS_MAX} rows in all, not {0}")]
    RowCount(usize),
    #[error("a list needs 1 to {SECTIONS_MAX} sections, not {0}")]
    SectionCount(usize),
    #[error("a section needs at least one row")]
    EmptySection,
    #[error("a list with several sections needs a title on each")]
    MissingSectionTitle,
    #[error("id {0:?} is empty or longer than its limit")]
    Id(String),
    #[error("button titles must be unique within a message: {0:?}")]
    DuplicateTitle(String),
    #[error("ids must be unique within a message: {0:?}")]
    DuplicateId(String),
}

/// The length Meta's limits are checked against (see the module docs).
pub fn limit_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// `raw` trimmed and cut to at most `max` UTF-16 units, ending in `…` when cut. An empty
/// result becomes `-`, because Meta refuses empty fields. Idempotent.
fn fit(raw: &str, max: usize) -> String {
    debug_assert!(max >= 2);
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return "-".to_owned();
    }
    if limit_len(trimmed) <= max {
        return trimmed.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in trimmed.chars() {
        // One unit stays free for the ellipsis.
        if used + c.len_utf16() > max - 1 {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    let mut out = out.trim_end().to_owned();
    out.push('…');
    out
}

/// Like [`fit`] for a title: runs of white space (new lines included) become one space.
fn fit_line(raw: &str, max: usize) -> String {
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    fit(&one_line, max)
}

fn checked_id(id: String, max: usize) -> Result<String, LimitError> {
    if id.is_empty() || limit_len(&id) > max {
        Err(LimitError::Id(id))
    } else {
        Ok(id)
    }
}

/// One reply button: the id comes back in `button_reply.id` when it is tapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawButton")]
pub struct Button {
    id: String,
    title: String,
}

#[derive(Deserialize)]
struct RawButton {
    id: String,
    title: String,
}

impl TryFrom<RawButton> for Button {
    type Error = LimitError;
    fn try_from(raw: RawButton) -> Result<Self, Self::Error> {
        Button::new(raw.id, &raw.title)
    }
}

impl Button {
    pub fn new(id: impl Into<String>, title: &str) -> Result<Button, LimitError> {
        Ok(Button {
            id: checked_id(id.into(), BUTTON_ID_MAX)?,
            title: fit_line(title, BUTTON_TITLE_MAX),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn title(&self) -> &str {
        &self.title
    }
}

/// One row of a list: the id comes back in `list_reply.id` when it is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRow")]
pub struct Row {
    id: String,
    title: String,
    description: Option<String>,
}

#[derive(Deserialize)]
struct RawRow {
    id: String,
    title: String,
    description: Option<String>,
}

impl TryFrom<RawRow> for Row {
    type Error = LimitError;
    fn try_from(raw: RawRow) -> Result<Self, Self::Error> {
        Row::new(raw.id, &raw.title, raw.description.as_deref())
    }
}

impl Row {
    pub fn new(
        id: impl Into<String>,
        title: &str,
        description: Option<&str>,
    ) -> Result<Row, LimitError> {
        Ok(Row {
            id: checked_id(id.into(), ROW_ID_MAX)?,
            title: fit_line(title, ROW_TITLE_MAX),
            description: description.map(|d| fit_line(d, ROW_DESCRIPTION_MAX)),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

/// A titled group of rows in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSection")]
pub struct Section {
    title: Option<String>,
    rows: Vec<Row>,
}

#[derive(Deserialize)]
struct RawSection {
    title: Option<String>,
    rows: Vec<Row>,
}

impl TryFrom<RawSection> for Section {
    type Error = LimitError;
    fn try_from(raw: RawSection) -> Result<Self, Self::Error> {
        Section::new(raw.title.as_deref(), raw.rows)
    }
}

impl Section {
    pub fn new(title: Option<&str>, rows: Vec<Row>) -> Result<Section, LimitError> {
        if rows.is_empty() {
            return Err(LimitError::EmptySection);
        }
        if rows.len() > ROWS_MAX {
            return Err(LimitError::RowCount(rows.len()));
        }
        Ok(Section {
            title: title.map(|t| fit_line(t, SECTION_TITLE_MAX)),
            rows,
        })
    }

    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
}

/// A plain text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawText")]
pub struct Text {
    body: String,
}

#[derive(Deserialize)]
struct RawText {
    body: String,
}

impl From<RawText> for Text {
    fn from(raw: RawText) -> Self {
        Text::new(&raw.body)
    }
}

impl Text {
    pub fn new(body: &str) -> Text {
        Text {
            body: fit(body, TEXT_BODY_MAX),
        }
    }

    pub fn body(&self) -> &str {
        &self.body
    }
}

/// An interactive message with 1 to 3 reply buttons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawButtons")]
pub struct Buttons {
    body: String,
    buttons: Vec<Button>,
}

#[derive(Deserialize)]
struct RawButtons {
    body: String,
    buttons: Vec<Button>,
}

impl TryFrom<RawButtons> for Buttons {
    type Error = LimitError;
    fn try_from(raw: RawButtons) -> Result<Self, Self::Error> {
        Buttons::new(&raw.body, raw.buttons)
    }
}

impl Buttons {
    pub fn new(body: &str, buttons: Vec<Button>) -> Result<Buttons, LimitError> {
        if buttons.is_empty() || buttons.len() > BUTTONS_MAX {
            return Err(LimitError::ButtonCount(buttons.len()));
        }
        for (i, button) in buttons.iter().enumerate() {
            for earlier in &buttons[..i] {
                if earlier.title == button.title {
                    return Err(LimitError::DuplicateTitle(button.title.clone()));
                }
                if earlier.id == button.id {
                    return Err(LimitError::DuplicateId(button.id.clone()));
                }
            }
        }
        Ok(Buttons {
            body: fit(body, INTERACTIVE_BODY_MAX),
            buttons,
        })
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    pub fn buttons(&self) -> &[Button] {
        &self.buttons
    }
}

/// An interactive list: a button that opens up to 10 rows in up to 10 sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawList")]
pub struct List {
    body: String,
    button: String,
    sections: Vec<Section>,
}

#[derive(Deserialize)]
struct RawList {
    body: String,
    button: String,
    sections: Vec<Section>,
}

impl TryFrom<RawList> for List {
    type Error = LimitError;
    fn try_from(raw: RawList) -> Result<Self, Self::Error> {
        List::new(&raw.body, &raw.button, raw.sections)
    }
}

impl List {
    pub fn new(body: &str, button: &str, sections: Vec<Section>) -> Result<List, LimitError> {
        if sections.is_empty() || sections.len() > SECTIONS_MAX {
            return Err(LimitError::SectionCount(sections.len()));
        }
        if sections.len() > 1 && sections.iter().any(|s| s.title.is_none()) {
            return Err(LimitError::MissingSectionTitle);
        }
        let rows: Vec<&Row> = sections.iter().flat_map(|s| &s.rows).collect();
        if rows.len() > ROWS_MAX {
            return Err(LimitError::RowCount(rows.len()));
        }
        for (i, row) in rows.iter().enumerate() {
            if rows[..i].iter().any(|earlier| earlier.id == row.id) {
                return Err(LimitError::DuplicateId(row.id.clone()));
            }
        }
        Ok(List {
            body: fit(body, INTERACTIVE_BODY_MAX),
            button: fit_line(button, LIST_BUTTON_MAX),
            sections,
        })
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    pub fn button(&self) -> &str {
        &self.button
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }
}

/// A reply the notifier sends. Each variant holds a type that can only be built within
/// Meta's limits, so a value of this type is always sendable as far as limits go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutgoingMessage {
    Text(Text),
    Buttons(Buttons),
    List(List),
}

impl OutgoingMessage {
    pub fn text(body: &str) -> OutgoingMessage {
        OutgoingMessage::Text(Text::new(body))
    }

    pub fn buttons(body: &str, buttons: Vec<Button>) -> Result<OutgoingMessage, LimitError> {
        Buttons::new(body, buttons).map(OutgoingMessage::Buttons)
    }

    pub fn list(
        body: &str,
        button: &str,
        sections: Vec<Section>,
    ) -> Result<OutgoingMessage, LimitError> {
        List::new(body, button, sections).map(OutgoingMessage::List)
    }

    /// The body text, whatever the kind.
    pub fn body(&self) -> &str {
        match self {
            OutgoingMessage::Text(m) => m.body(),
            OutgoingMessage::Buttons(m) => m.body(),
            OutgoingMessage::List(m) => m.body(),
        }
    }

    /// Every id the customer can send back by tapping this message.
    pub fn reply_ids(&self) -> Vec<&str> {
        match self {
            OutgoingMessage::Text(_) => Vec::new(),
            OutgoingMessage::Buttons(m) => m.buttons.iter().map(|b| b.id()).collect(),
            OutgoingMessage::List(m) => m
                .sections
                .iter()
                .flat_map(|s| &s.rows)
                .map(|r| r.id())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_at_a_char_boundary_and_marks_the_cut() {
        assert_eq!(fit("  coffee  ", 20), "coffee");
        assert_eq!(fit("", 20), "-");
        assert_eq!(fit("abcdefghij", 5), "abcd…");
        // 'é' is one unit, '😀' two: the emoji does not fit in the last free unit.
        assert_eq!(fit("éééé😀x", 6), "éééé…");
        assert_eq!(limit_len(&fit(&"😀".repeat(30), 24)), 23);
        let once = fit("a very long reward name indeed", 10);
        assert_eq!(fit(&once, 10), once, "fit is idempotent");
    }

    #[test]
    fn titles_are_one_line() {
        let row = Row::new("x", "Free\n\ncoffee\t today", Some("a\nb")).unwrap();
        assert_eq!(row.title(), "Free coffee today");
        assert_eq!(row.description(), Some("a b"));
    }

    #[test]
    fn counts_ids_and_uniqueness_are_checked() {
        let b = |id: &str, t: &str| Button::new(id, t).unwrap();
        assert_eq!(
            OutgoingMessage::buttons("x", vec![]),
            Err(LimitError::ButtonCount(0))
        );
        let four = vec![b("1", "a"), b("2", "b"), b("3", "c"), b("4", "d")];
        assert_eq!(
            OutgoingMessage::buttons("x", four),
            Err(LimitError::ButtonCount(4))
        );
        assert_eq!(
            OutgoingMessage::buttons("x", vec![b("1", "Same"), b("2", "Same")]),
            Err(LimitError::DuplicateTitle("Same".into()))
        );
        assert_eq!(
            OutgoingMessage::buttons("x", vec![b("1", "a"), b("1", "b")]),
            Err(LimitError::DuplicateId("1".into()))
        );
        assert!(Button::new("", "a").is_err());
        assert!(Button::new("x".repeat(BUTTON_ID_MAX + 1), "a").is_err());
        assert!(Row::new("x".repeat(ROW_ID_MAX + 1), "a", None).is_err());

        let rows = |n: usize, prefix: &str| -> Vec<Row> {
            (0..n)
                .map(|i| Row::new(format!("{prefix}{i}"), "t", None).unwrap())
                .collect()
        };
        assert_eq!(Section::new(None, vec![]), Err(LimitError::EmptySection));
        assert_eq!(
            Section::new(None, rows(11, "r")),
            Err(LimitError::RowCount(11))
        );
        let two_untitled = vec![
            Section::new(None, rows(1, "a")).unwrap(),
            Section::new(Some("b"), rows(1, "b")).unwrap(),
        ];
        assert_eq!(
            OutgoingMessage::list("x", "y", two_untitled),
            Err(LimitError::MissingSectionTitle)
        );
        let eleven = vec![
            Section::new(Some("a"), rows(6, "a")).unwrap(),
            Section::new(Some("b"), rows(5, "b")).unwrap(),
        ];
        assert_eq!(
            OutgoingMessage::list("x", "y", eleven),
            Err(LimitError::RowCount(11))
        );
        let duplicate = vec![
            Section::new(Some("a"), rows(2, "r")).unwrap(),
            Section::new(Some("b"), rows(2, "r")).unwrap(),
        ];
        assert_eq!(
            OutgoingMessage::list("x", "y", duplicate),
            Err(LimitError::DuplicateId("r0".into()))
        );
        assert_eq!(
            OutgoingMessage::list("x", "y", vec![]),
            Err(LimitError::SectionCount(0))
        );
    }

    #[test]
    fn messages_round_trip_through_messagepack_and_are_rechecked() {
        let message = OutgoingMessage::list(
            "Choose",
            "Rewards",
            vec![Section::new(
                Some("Rewards"),
                vec![Row::new("reward:1", "Coffee", Some("100 pts")).unwrap()],
            )
            .unwrap()],
        )
        .unwrap();
        let bytes = rmp_serde::to_vec_named(&message).unwrap();
        let back: OutgoingMessage = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, message);

        // A message whose bytes break a count is refused when read back.
        #[derive(Serialize)]
        struct Forged {
            r#type: &'static str,
            body: &'static str,
            buttons: Vec<Button>,
        }
        let forged = Forged {
            r#type: "buttons",
            body: "x",
            buttons: (0..4)
                .map(|i| Button::new(i.to_string(), &i.to_string()).unwrap())
                .collect(),
        };
        let bytes = rmp_serde::to_vec_named(&forged).unwrap();
        assert!(rmp_serde::from_slice::<OutgoingMessage>(&bytes).is_err());
    }
}
